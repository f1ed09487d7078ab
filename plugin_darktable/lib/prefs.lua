--[[
    ase/lib/prefs: the plugin's preferences (darktable's preferences > lua options; stored as
    lua/ase_critic/<name> in darktablerc) and their defaults
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local util = require "ase/lib/util"

local prefs = {
  MODULE = "ase_critic",
  -- ase_critic.lua sets client_cmd from the line install_plugin.py writes
  DEFAULTS = { client_cmd = "ase-client", viewer_cmd = "ase-viewer", tag_root = "aesthetics", timeout_s = 10 },
}

local MODULE, DEFAULTS = prefs.MODULE, prefs.DEFAULTS

-- a string preference, trimmed; `default` when unset or blank
function prefs.string(name, default)
  local v = dt.preferences.read(MODULE, name, "string")
  if v == nil or util.trim(v) == "" then return default end
  return util.trim(v)
end

function prefs.bool(name)
  return dt.preferences.read(MODULE, name, "bool") == true
end

function prefs.timeout()
  local v = tonumber(dt.preferences.read(MODULE, "timeout_s", "integer"))
  if not v or v < 1 then v = DEFAULTS.timeout_s end
  return v
end

function prefs.client_cmd()
  return prefs.string("client_cmd", DEFAULTS.client_cmd)
end

function prefs.viewer_cmd()
  return prefs.string("viewer_cmd", DEFAULTS.viewer_cmd)
end

-- ase-mllm (learn from my ratings): the preference, else the ase-mllm beside ase-client (install.sh installs both
-- in one folder), else ase-mllm on the PATH
function prefs.mllm_cmd()
  local set = prefs.string("mllm_cmd", "")
  if set ~= "" then return set end
  local client = prefs.client_cmd()
  local dir = client:match("^(.*/)ase%-client$")
  return dir and (dir .. "ase-mllm") or "ase-mllm"
end

-- the personal profile critiques ask for ("" = none)
function prefs.profile()
  return prefs.string("profile", "")
end

function prefs.endpoint()
  return prefs.string("endpoint", "")
end

function prefs.tag_root()
  -- "|" separates levels: a root like "critic|ase" is fine, stray separators are not
  local root = prefs.string("tag_root", DEFAULTS.tag_root):gsub("^|+", ""):gsub("|+$", "")
  if root == "" then root = DEFAULTS.tag_root end
  return root
end

function prefs.register()
  -- darktable lists the preferences of every script on one page: the labels carry the script's name
  dt.preferences.register(MODULE, "timeout_s", "integer", _("ASE critic: daemon timeout (seconds)"),
    _("how long ase-client waits for a silent daemon before giving up"), DEFAULTS.timeout_s, 1, 3600)
  dt.preferences.register(MODULE, "set_rating_auto", "bool", _("ASE critic: rate from the score after a critique"),
    _("set the star rating from the critic's score (0-2: 1 star ... 8-10: 5 stars) as soon as a critique arrives"),
    false)
  dt.preferences.register(MODULE, "write_description_auto", "bool",
    _("ASE critic: write the critique into the description"),
    _("replace the image's description with the critique as soon as it arrives"), false)
  dt.preferences.register(MODULE, "apply_tags_auto", "bool", _("ASE critic: attach tags after a critique"),
    _("attach the suggested tags (under the tag root) as soon as a critique arrives"), true)
  dt.preferences.register(MODULE, "auto_on_import", "bool", _("ASE critic: critique imported images"),
    _("queue every imported image for a critique in the background"), false)
  dt.preferences.register(MODULE, "tag_root", "string", _("ASE critic: tag root"),
    _("the critic's tags are attached as <root>|<attribute>|<value>; tags under the root belong to the critic " ..
      "and a new critique replaces them"), DEFAULTS.tag_root)
  dt.preferences.register(MODULE, "viewer_cmd", "string", _("ASE critic: ase-viewer command"),
    _("path of ase-viewer, which shows the saliency overlay"), DEFAULTS.viewer_cmd)
  dt.preferences.register(MODULE, "endpoint", "string", _("ASE critic: daemon endpoint"),
    _("ipc:// or tcp:// address of ase-daemon; empty: ase-client's default (its config file, then the local socket)"),
    "")
  dt.preferences.register(MODULE, "profile", "string", _("ASE critic: personal profile"),
    _("critiques also get a personal score by this profile (learnt with \"learn from my ratings\" or " ..
      "ase-mllm learn); empty: none"), "")
  dt.preferences.register(MODULE, "learn_model", "string", _("ASE critic: model folder for learning"),
    _("the daemon's model folder when it does not run the built-in starter model: a profile only works with the " ..
      "model it was learnt with; empty: ase-mllm's default"), "")
  dt.preferences.register(MODULE, "mllm_cmd", "string", _("ASE critic: ase-mllm command"),
    _("path of ase-mllm (learn from my ratings); empty: the one beside ase-client"), "")
  dt.preferences.register(MODULE, "client_cmd", "string", _("ASE critic: ase-client command"),
    _("path of ase-client (e.g. ~/.local/share/ase-mllm/venv/bin/ase-client)"), DEFAULTS.client_cmd)
end

return prefs
