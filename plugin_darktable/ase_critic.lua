--[[
    ase_critic: aesthetic critiques from the ASE-MLLM daemon, inside darktable's lighttable

    copyright (c) 2025 the ASE-MLLM authors
    Apache-2.0

    A lighttable panel that shows, for the hovered or selected image, the critic's score, its critique, one
    line per attribute and the suggested tags, and that can:

      * critique the selection in a background job (progress bar, cancellable; darktable never waits)
      * attach the suggested tags under a root of your choice (default "aesthetics|...")
      * write the critique into the image's description
      * rate the image from its score (the documented 0..10 -> 1..5 stars mapping)
      * open the saliency overlay in ase-viewer
      * import the saliency map and group it with the image
      * critique every imported image in the background (auto mode)

    The images are critiqued as you developed them: each is exported as a JPEG of at most 1024 px through
    darktable's own pipeline, and the original file is used only when that export fails.

    ADDITIONAL SOFTWARE NEEDED FOR THIS SCRIPT
      * ase-client and a running ase-daemon (the ASE-MLLM project; `./install.sh` installs both)
      * ase-viewer for "show saliency" (optional)

    USAGE
      * python plugin_darktable/install_plugin.py   (or copy this file to <configdir>/lua/ase/ase_critic.lua
        and add the line `require "ase/ase_critic"` to <configdir>/luarc)
      * start ase-daemon, start darktable, open the "ASE critic" panel on the right of the lighttable
      * preferences: global preferences > lua options > "ASE critic: ..."

    The script talks to the daemon only through `ase-client ... critique --format lines`; docs/darktable.md
    describes the preferences, the buttons and the limits per darktable version.
]]

local dt = require "darktable"

local MODULE = "ase_critic"
local EVENT = "ase_critic"

-- install_plugin.py --client PATH rewrites the next line; the preference "client_cmd" wins when set
local DEFAULT_CLIENT_CMD = "ase-client"
local DEFAULT_VIEWER_CMD = "ase-viewer"
local DEFAULT_TAG_ROOT = "aesthetics"
local DEFAULT_TIMEOUT_S = 10
local EXPORT_SIZE = 1024           -- longest side of the JPEG the critic sees
local CHUNK = 8                    -- images per ase-client call (progress and cancel granularity)
local OVERLAY_SUFFIX = ".saliency.png"

-- -------------------------------------------------------------------------------------------------
-- API version: 9.0.0 (darktable 4.2) or newer; anything newer is detected with pcall where it is used

local function api_at_least(major, minor, patch)
  local c = dt.configuration
  local v = { c.api_version_major or 0, c.api_version_minor or 0, c.api_version_patchlevel or 0 }
  local want = { major, minor, patch }
  for i = 1, 3 do
    if v[i] ~= want[i] then return v[i] > want[i] end
  end
  return true
end

local gettext = function(msgid) return msgid end
do
  local ok, fn = pcall(function() return dt.gettext.gettext end)
  if ok and type(fn) == "function" then gettext = fn end
end

local function _(msgid)
  return gettext(msgid)
end

-- return data structure for script_manager

local script_data = {}

script_data.metadata = {
  name = "ase_critic",
  purpose = _("aesthetic critiques, scores, tags and ratings from the ASE-MLLM daemon"),
  author = "ASE-MLLM authors",
  help = "docs/darktable.md in the ASE-MLLM project",
}

script_data.destroy = nil
script_data.destroy_method = nil
script_data.restart = nil
script_data.show = nil

if not api_at_least(9, 0, 0) then
  dt.print(string.format(_("ASE critic needs darktable 4.2 or newer (Lua API 9.0.0), this is API %s"),
    dt.configuration.api_version_string))
  return script_data
end

local has_gui = dt.configuration.has_gui

-- -------------------------------------------------------------------------------------------------
-- state

local ase = {
  widgets = {},
  cache = {},            -- image id -> parsed critique (the last good one)
  errors = {},           -- image id -> message of the last failed critique
  queue = {},            -- images imported in auto mode, waiting for the worker
  queued = {},           -- image id -> true while in the queue
  worker_running = false,
  running = 0,           -- critique jobs in progress
  shown_id = nil,        -- the image the panel shows
  module_installed = false,
  event_registered = false,
  session_dir = nil,
  jobs = {},             -- running jobs' state (pid, cancelled), for cancel and exit
}

-- -------------------------------------------------------------------------------------------------
-- helpers

local function log(msg)
  dt.print_log("[ase_critic] " .. msg)
end

local function notify(msg)
  dt.print(msg)
  log(msg)
end

-- one word for /bin/sh, whatever the string holds (spaces, quotes, $, backslashes, newlines)
local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

local function copy_file(src, dst)
  local data = read_file(src)
  if not data then return false end
  local f = io.open(dst, "wb")
  if not f then return false end
  f:write(data)
  f:close()
  return true
end

local function trim(s)
  return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", ""))
end

local function last_line(s)
  local last = ""
  for line in tostring(s or ""):gmatch("[^\n]+") do
    if trim(line) ~= "" then last = trim(line) end
  end
  return last
end

local function shorten(s, n)
  s = tostring(s or "")
  if #s <= n then return s end
  -- cut on a UTF-8 character boundary
  local cut = n
  while cut > 1 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
    cut = cut - 1
  end
  return s:sub(1, cut) .. "…"
end

local function image_path(image)
  return tostring(image)  -- the full path of the file
end

local function is_overlay(image)
  local name = image.filename or ""
  return name:sub(-#OVERLAY_SUFFIX) == OVERLAY_SUFFIX
end

-- -------------------------------------------------------------------------------------------------
-- preferences (stored as lua/ase_critic/<name> in darktablerc)

local function pref_string(name, default)
  local v = dt.preferences.read(MODULE, name, "string")
  if v == nil or trim(v) == "" then return default end
  return trim(v)
end

local function pref_bool(name)
  return dt.preferences.read(MODULE, name, "bool") == true
end

local function pref_timeout()
  local v = tonumber(dt.preferences.read(MODULE, "timeout_s", "integer"))
  if not v or v < 1 then v = DEFAULT_TIMEOUT_S end
  return v
end

local function tag_root()
  -- "|" separates levels: a root like "critic|ase" is fine, stray separators are not
  local root = pref_string("tag_root", DEFAULT_TAG_ROOT):gsub("^|+", ""):gsub("|+$", "")
  if root == "" then root = DEFAULT_TAG_ROOT end
  return root
end

local function register_preferences()
  -- darktable lists the preferences of every script on one page: the labels carry the script's name
  dt.preferences.register(MODULE, "timeout_s", "integer", _("ASE critic: daemon timeout (seconds)"),
    _("how long ase-client waits for a silent daemon before giving up"), DEFAULT_TIMEOUT_S, 1, 3600)
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
      "and a new critique replaces them"), DEFAULT_TAG_ROOT)
  dt.preferences.register(MODULE, "viewer_cmd", "string", _("ASE critic: ase-viewer command"),
    _("path of ase-viewer, which shows the saliency overlay"), DEFAULT_VIEWER_CMD)
  dt.preferences.register(MODULE, "endpoint", "string", _("ASE critic: daemon endpoint"),
    _("ipc:// or tcp:// address of ase-daemon; empty: ase-client's default (its config file, then the local socket)"),
    "")
  dt.preferences.register(MODULE, "client_cmd", "string", _("ASE critic: ase-client command"),
    _("path of ase-client (e.g. ~/.local/share/ase-mllm/venv/bin/ase-client)"), DEFAULT_CLIENT_CMD)
end

-- -------------------------------------------------------------------------------------------------
-- ase-client's `--format lines` output (docs/protocol.md): key<TAB>value lines, one block per image
-- ending with `end`; values escape backslash, newline, tab and carriage return

local UNESCAPES = { n = "\n", t = "\t", r = "\r", ["\\"] = "\\" }

local function unescape(s)
  return (s:gsub("\\(.)", function(c) return UNESCAPES[c] or c end))
end

local function new_parser()
  -- garbage: lines outside any block (a client that is not ase-client, a Python traceback on stdout, ...)
  local parser = { block = nil, blocks = {}, garbage = {} }

  -- feed one line; returns the block it completed, if any
  function parser.feed(line)
    line = line:gsub("\r$", "")
    if line == "" then return nil end
    local key, value = line:match("^([^\t]+)\t(.*)$")
    if not key then key, value = line, "" end
    if key == "end" then
      local b = parser.block
      parser.block = nil
      if not b then return nil end
      if not b.error then
        if type(b.score) ~= "number" then
          b.error = { code = "bad_output", message = _("ase-client printed no score") }
        elseif not b.text then
          b.error = { code = "bad_output", message = _("ase-client printed no critique") }
        end
      end
      table.insert(parser.blocks, b)
      return b
    elseif key == "image" then
      parser.block = { image = unescape(value), tags = {}, attributes = {} }
    elseif not parser.block then
      if key ~= "token" then table.insert(parser.garbage, line) end
    elseif key == "score" then
      parser.block.score = tonumber(value)
    elseif key == "rating" then
      local r = tonumber(value)
      if r and r >= 0 and r <= 5 then parser.block.rating = math.floor(r) end
    elseif key == "tag" then
      local t = trim(unescape(value))
      if t ~= "" then table.insert(parser.block.tags, t) end
    elseif key:sub(1, 5) == "attr." then
      table.insert(parser.block.attributes, { name = key:sub(6), value = unescape(value) })
    elseif key == "text" then
      parser.block.text = unescape(value)
    elseif key == "saliency" then
      parser.block.saliency = unescape(value)
    elseif key == "cached" then
      parser.block.cached = value == "true"
    elseif key == "model" then
      parser.block.model = unescape(value)
    elseif key == "error" then
      local code, message = value:match("^([^\t]*)\t(.*)$")
      parser.block.error = { code = unescape(code or value), message = unescape(message or "") }
    end  -- other keys: ignored (docs/protocol.md: new keys may be added within version 1)
    return nil
  end

  return parser
end

-- the whole output at once (tests, tools)
local function parse_lines(text)
  local parser = new_parser()
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do parser.feed(line) end
  return parser.blocks, parser.garbage
end

-- xmp:Rating from the 0..10 score: five equal bands, lower bound included ([0,2) 1 star ... [8,10] 5 stars),
-- the score first rounded to two decimals and clamped. Only used when ase-client printed no `rating` line.
local function rating_from_score(score)
  local s = math.floor(score * 100 + 0.5) / 100
  s = math.min(10, math.max(0, s))
  return math.min(5, math.floor(s / 2) + 1)
end

local function stars(n)
  n = math.max(0, math.min(5, n or 0))
  return string.rep("★", n) .. string.rep("☆", 5 - n)
end

-- "aesthetics|exposure|underexposed" -> "<root>|exposure|underexposed"
local function reroot(tag, root)
  local rest = tag:match("^[^|]*|(.+)$")
  return root .. "|" .. (rest or tag)
end

-- -------------------------------------------------------------------------------------------------
-- the panel

local function result_for(image)
  if not image then return nil end
  return ase.cache[image.id]
end

local function set_status(msg)
  if ase.widgets.status then ase.widgets.status.label = msg or "" end
end

local function display(image)
  local w = ase.widgets
  if not has_gui or not w.critique then return end
  ase.shown_id = image and image.id or nil
  if not image then
    w.image_label.label = _("no image")
    w.score.label = ""
    w.critique.text = _("hover over or select an image, then click \"critique selection\"")
    w.attributes.label = ""
    w.attributes.tooltip = ""
    w.tags.label = ""
    return
  end
  w.image_label.label = image.filename
  local res = ase.cache[image.id]
  if not res then
    w.score.label = ""
    w.attributes.label = ""
    w.attributes.tooltip = ""
    w.tags.label = ""
    local err = ase.errors[image.id]
    w.critique.text = err and (_("critique failed: ") .. err)
      or _("not critiqued yet: click \"critique selection\"")
    return
  end
  local rating = res.rating or rating_from_score(res.score)
  w.score.label = string.format(_("score %.1f / 10   %s"), res.score, stars(rating))
  w.critique.text = res.text
  local attrs, full = {}, {}
  for _i, a in ipairs(res.attributes) do
    local line = a.name:gsub("_", " ") .. ": " .. a.value
    table.insert(attrs, shorten(line, 60))
    table.insert(full, line)
  end
  w.attributes.label = table.concat(attrs, "\n")
  w.attributes.tooltip = table.concat(full, "\n")
  local root, tags = tag_root(), {}
  for _i, t in ipairs(res.tags) do table.insert(tags, reroot(t, root)) end
  w.tags.label = #tags > 0 and table.concat(tags, "\n") or _("(no tags suggested)")
end

local function target_images()
  local images = {}
  local ok, act = pcall(function() return dt.gui.action_images end)
  if ok and act then
    for _i, img in ipairs(act) do table.insert(images, img) end
  end
  if #images == 0 then
    for _i, img in ipairs(dt.gui.selection()) do table.insert(images, img) end
  end
  return images
end

local function refresh_current()
  if not has_gui then return end
  local hovered = dt.gui.hovered
  if hovered then
    display(hovered)
  else
    display(dt.gui.selection()[1])
  end
end

-- -------------------------------------------------------------------------------------------------
-- apply a critique to an image

local function apply_tags_to(image, res)
  local root = tag_root()
  local wanted = {}
  for _i, t in ipairs(res.tags) do wanted[reroot(t, root)] = true end
  -- the critic owns the tags under its root: the new critique replaces the old one's
  for _i, tag in ipairs(dt.tags.get_tags(image)) do
    if tag.name:sub(1, #root + 1) == root .. "|" and not wanted[tag.name] then
      dt.tags.detach(tag, image)
    end
  end
  local n = 0
  for name in pairs(wanted) do
    dt.tags.attach(dt.tags.create(name), image)
    n = n + 1
  end
  return n
end

local function rating_of(res)
  return res.rating or rating_from_score(res.score)
end

local function apply_result(image, res)
  if pref_bool("apply_tags_auto") then apply_tags_to(image, res) end
  if pref_bool("write_description_auto") then image.description = res.text end
  if pref_bool("set_rating_auto") then image.rating = rating_of(res) end
end

-- run fn(image, res) on every image that has a critique; returns how many it ran on
local function for_critiqued(images, what, fn)
  local done, missing = 0, 0
  for _i, image in ipairs(images) do
    local res = ase.cache[image.id]
    if res then
      fn(image, res)
      done = done + 1
    else
      missing = missing + 1
    end
  end
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
  elseif missing > 0 then
    dt.print(string.format(_("ASE critic: %s %d image(s); %d not critiqued yet"), what, done, missing))
  else
    dt.print(string.format(_("ASE critic: %s %d image(s)"), what, done))
  end
  return done
end

local function apply_tags(images)
  return for_critiqued(images or target_images(), _("tagged"), apply_tags_to)
end

local function write_description(images)
  return for_critiqued(images or target_images(), _("described"),
    function(image, res) image.description = res.text end)
end

local function rate_from_score(images)
  return for_critiqued(images or target_images(), _("rated"),
    function(image, res) image.rating = rating_of(res) end)
end

local function command_exists(cmd)
  if cmd:find("/") then return file_exists(cmd) end
  local ok = os.execute("command -v " .. sh_quote(cmd) .. " >/dev/null 2>&1")
  return ok == true or ok == 0
end

local function show_saliency(image)
  image = image or target_images()[1]
  if not image then
    dt.print(_("ASE critic: select an image first"))
    return false
  end
  local viewer = pref_string("viewer_cmd", DEFAULT_VIEWER_CMD)
  if not command_exists(viewer) then
    notify(string.format(_("ASE critic: %s not found: set its path in preferences > lua options"), viewer))
    return false
  end
  local cmd = sh_quote(viewer)
  local endpoint = pref_string("endpoint", "")
  if endpoint ~= "" then cmd = cmd .. " --endpoint " .. sh_quote(endpoint) end
  cmd = cmd .. " -- " .. sh_quote(image_path(image)) .. " </dev/null >/dev/null 2>&1 &"
  log("running " .. cmd)
  dt.control.execute(cmd)  -- detached: returns at once
  return true
end

-- import each image's saliency map (a grayscale PNG beside the photo) and group it with the photo
local function import_overlay(images)
  images = images or target_images()
  local imported = {}
  for _i, image in ipairs(images) do
    local res = ase.cache[image.id]
    if res and res.saliency and file_exists(res.saliency) then
      local dest = image.path .. "/" .. image.filename .. OVERLAY_SUFFIX
      if copy_file(res.saliency, dest) then
        local overlay = dt.database.import(dest)
        if overlay then
          overlay:group_with(image)
          table.insert(imported, overlay)
        end
      end
    end
  end
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
  else
    dt.print(string.format(_("ASE critic: imported %d saliency map(s)"), #imported))
  end
  return imported
end

-- -------------------------------------------------------------------------------------------------
-- critiques: export, ase-client, parse, cache, apply

local function session_dir()
  if ase.session_dir then return ase.session_dir end
  local base = os.tmpname()  -- a fresh private name (the file it creates is replaced by the folder)
  os.remove(base)
  local dir = base .. "_ase_critic"
  os.execute("mkdir -p " .. sh_quote(dir .. "/saliency"))
  ase.session_dir = dir
  return dir
end

local exporter = nil

-- the developed image as a JPEG at model resolution; the original file when the export fails
local function export_for_critique(image)
  local ok_fmt, err = pcall(function()
    if not exporter then
      exporter = dt.new_format("jpeg")
      exporter.max_width = EXPORT_SIZE
      exporter.max_height = EXPORT_SIZE
      pcall(function() exporter.quality = 92 end)
    end
  end)
  if ok_fmt then
    local stem = image.filename:gsub("%.[^.]*$", ""):gsub("[^%w%-_.]", "_")
    local name = string.format("%s/%d-%s.jpg", session_dir(), image.id, stem)
    os.remove(name)
    -- write_image's return value is unreliable (false on success on 4.2): the file decides
    pcall(function() exporter:write_image(image, name) end)
    if file_exists(name) then return name, true end
    log("export failed for " .. image_path(image) .. ", critiquing the original file")
  else
    log("no jpeg format: " .. tostring(err))
  end
  return image_path(image), false
end

-- stop a running ase-client (and anything it started)
local function kill(pid)
  pid = tonumber(pid)
  if pid then
    os.execute(string.format("pkill -TERM -P %d >/dev/null 2>&1; kill -TERM %d >/dev/null 2>&1", pid, pid))
  end
end

local function client_command(files, errfile)
  local parts = { sh_quote(pref_string("client_cmd", DEFAULT_CLIENT_CMD)) }
  local endpoint = pref_string("endpoint", "")
  if endpoint ~= "" then
    table.insert(parts, "--endpoint " .. sh_quote(endpoint))
  end
  table.insert(parts, "--timeout " .. tostring(pref_timeout()))
  table.insert(parts, "critique --format lines --saliency-out " .. sh_quote(session_dir() .. "/saliency") .. " --")
  for _i, f in ipairs(files) do table.insert(parts, sh_quote(f)) end
  -- the shell prints its pid and becomes ase-client (exec), so that cancel can stop it
  return "echo $$; exec " .. table.concat(parts, " ") .. " </dev/null 2>" .. sh_quote(errfile)
end

-- one ase-client run over `files`; on_block(block, index) for each block as it arrives.
-- returns ok, message (message: why the whole run failed)
local function run_client(files, state, on_block)
  local errfile = session_dir() .. "/client-" .. tostring(state.serial) .. ".err"
  local cmd = client_command(files, errfile)
  log("running " .. cmd)
  local p = io.popen(cmd, "r")
  if not p then return false, _("could not start ase-client") end
  p:setvbuf("no")  -- readiness of the pipe must mean a line is there (see dt.control.read)
  dt.control.read(p)
  state.pid = tonumber(p:read("l"))
  if state.cancelled then kill(state.pid) end
  local parser, n = new_parser(), 0
  while true do
    dt.control.read(p)  -- waits without holding darktable's Lua lock
    local line = p:read("l")
    if not line then break end
    local block = parser.feed(line)
    if block then
      n = n + 1
      on_block(block, n)
    end
  end
  local _ok, how, code = p:close()
  state.pid = nil
  local stderr = read_file(errfile) or ""
  os.remove(errfile)
  if state.cancelled then return false, _("cancelled") end
  if how == "signal" then
    return false, string.format(_("ase-client was killed (signal %s)"), tostring(code))
  end
  if code == 0 or (code == 1 and n > 0) then
    if n == 0 and #files > 0 then
      return false, _("unexpected output from ase-client: ") .. shorten(parser.garbage[1] or _("nothing"), 120)
    end
    return true
  end
  local detail = last_line(stderr)
  if code == 127 or code == 126 then
    return false, string.format(_("ase-client not found (%s): set its path in preferences > lua options"),
      pref_string("client_cmd", DEFAULT_CLIENT_CMD))
  elseif code == 3 then
    return false, _("the ASE daemon is not available: ") .. (detail ~= "" and detail or _("start ase-daemon"))
  elseif code == 2 then
    return false, _("ase-client usage error: ") .. detail
  end
  if detail == "" then detail = parser.garbage[1] or "" end
  return false, string.format(_("ase-client failed (exit %s): %s"), tostring(code), shorten(detail, 200))
end

-- Critique `images` and wait for the result. Runs in a background thread (dt.control.dispatch) so that
-- darktable stays responsive: export, ase-client and the parsing all happen here.
-- opts.label: job label. Returns { [image.id] = result }, failures (count), message (of a failed run or nil)
local function critique_images(images, opts)
  opts = opts or {}
  local results, failures, message = {}, 0, nil
  if not images or #images == 0 then
    return results, 0, nil
  end
  ase.running = ase.running + 1
  ase.serial = (ase.serial or 0) + 1
  local state = { cancelled = false, pid = nil, serial = ase.serial }
  ase.jobs[state] = true
  local job = nil
  if has_gui then
    job = dt.gui.create_job(opts.label or string.format(_("ASE critique of %d image(s)"), #images), true,
      function(j)
        state.cancelled = true
        kill(state.pid)
        if opts.on_cancel then opts.on_cancel() end
      end)
  end
  local total, steps = #images * 2, 0
  local function step()
    steps = steps + 1
    if job then pcall(function() job.percent = math.min(1, steps / total) end) end
  end

  local ok, err = pcall(function()
    local i = 1
    while i <= #images and not state.cancelled and not dt.control.ending do
      local chunk, files, by_file, exported = {}, {}, {}, {}
      for k = i, math.min(#images, i + CHUNK - 1) do
        local image = images[k]
        local file, was_exported = export_for_critique(image)
        table.insert(chunk, image)
        table.insert(files, file)
        by_file[file] = image
        if was_exported then table.insert(exported, file) end
        step()
        if state.cancelled then break end
      end
      i = i + #chunk
      if state.cancelled then break end

      local got = {}
      local run_ok, run_msg = run_client(files, state, function(block, n)
        local image = by_file[block.image] or chunk[n]
        if not image then return end
        got[image.id] = true
        if block.error then
          failures = failures + 1
          ase.errors[image.id] = block.error.code .. ": " .. block.error.message
          log(image_path(image) .. ": " .. ase.errors[image.id])
        else
          block.image = image_path(image)
          ase.cache[image.id] = block
          ase.errors[image.id] = nil
          results[image.id] = block
          apply_result(image, block)
        end
        if ase.shown_id == nil or ase.shown_id == image.id then display(image) end
        step()
      end)
      for _i, f in ipairs(exported) do os.remove(f) end
      if not run_ok then
        message = run_msg
        for _i, image in ipairs(chunk) do
          if not got[image.id] then
            failures = failures + 1
            ase.errors[image.id] = run_msg
          end
        end
        break  -- the daemon or the client is the problem: the next chunks would fail the same way
      end
      for _i, image in ipairs(chunk) do
        if not got[image.id] then
          failures = failures + 1
          ase.errors[image.id] = _("no result from ase-client")
        end
      end
    end
  end)
  if not ok then
    message = _("internal error: ") .. tostring(err)
    dt.print_error("[ase_critic] " .. tostring(err))
  end
  if job then pcall(function() job.valid = false end) end
  ase.jobs[state] = nil
  ase.running = ase.running - 1

  local n = 0
  for _k in pairs(results) do n = n + 1 end
  if state.cancelled then
    message = _("cancelled")
  end
  if message then
    notify(string.format(_("ASE critic: %s (%d of %d image(s) critiqued)"), message, n, #images))
    set_status(message)
  else
    local msg = failures > 0
      and string.format(_("ASE critic: %d image(s) critiqued, %d failed"), n, failures)
      or string.format(_("ASE critic: %d image(s) critiqued"), n)
    dt.print(msg)
    set_status(msg)
  end
  refresh_current()
  return results, failures, message
end

local function critique_selection()
  local images = target_images()
  if #images == 0 then
    dt.print(_("ASE critic: select images first"))
    return
  end
  set_status(string.format(_("critiquing %d image(s)..."), #images))
  ase.running = ase.running + 1  -- busy from the click on, not only once the thread runs
  dt.control.dispatch(function(imgs)
    local ok, err = pcall(critique_images, imgs)
    ase.running = ase.running - 1
    if not ok then dt.print_error("[ase_critic] " .. tostring(err)) end
  end, images)
end

-- cancel every running critique and empty the auto-mode queue
local function cancel_all()
  for _i, image in ipairs(ase.queue) do ase.queued[image.id] = nil end
  ase.queue = {}
  for state in pairs(ase.jobs) do
    state.cancelled = true
    kill(state.pid)
  end
end

-- -------------------------------------------------------------------------------------------------
-- auto mode: post-import-image only queues; a background worker drains the queue

local function auto_worker()
  dt.control.sleep(500)  -- let a folder import queue its images first
  while #ase.queue > 0 and not dt.control.ending do
    local batch = {}
    while #batch < CHUNK and #ase.queue > 0 do
      local image = table.remove(ase.queue, 1)
      ase.queued[image.id] = nil
      table.insert(batch, image)
    end
    local _results, _failures, message = critique_images(batch, {
      label = string.format(_("ASE critique of imported images (%d left)"), #ase.queue + #batch),
      on_cancel = function()
        for _i, image in ipairs(ase.queue) do ase.queued[image.id] = nil end
        ase.queue = {}
      end,
    })
    if message and #ase.queue > 0 then
      -- a down daemon fails every image the same way: drop the queue, say so once
      notify(string.format(_("ASE critic: %d queued image(s) not critiqued"), #ase.queue))
      for _i, image in ipairs(ase.queue) do ase.queued[image.id] = nil end
      ase.queue = {}
    end
  end
  ase.worker_running = false
end

local function on_import(event, image)
  if not image or not pref_bool("auto_on_import") or is_overlay(image) or ase.queued[image.id] then
    return
  end
  ase.queued[image.id] = true
  table.insert(ase.queue, image)
  if not ase.worker_running then
    ase.worker_running = true
    dt.control.dispatch(auto_worker)
  end
end

local function busy()
  return ase.running > 0 or ase.worker_running or #ase.queue > 0
end

-- -------------------------------------------------------------------------------------------------
-- GUI

local function build_widgets()
  local w = ase.widgets
  local function label(text)
    local l = dt.new_widget("label") { label = text }
    pcall(function() l.halign = "start" end)
    return l
  end
  w.image_label = dt.new_widget("section_label") { label = _("no image") }
  w.score = label("")
  w.critique = dt.new_widget("text_view") { text = "" }
  pcall(function() w.critique.editable = false end)
  w.attributes = label("")
  w.tags = label("")
  w.status = label("")
  pcall(function() w.status.ellipsize = "middle" end)
  w.critique_button = dt.new_widget("button") {
    label = _("critique selection"),
    tooltip = _("export the selected images as developed and critique them in the background"),
    clicked_callback = function() critique_selection() end,
  }
  w.apply_tags_button = dt.new_widget("button") {
    label = _("apply tags"),
    tooltip = _("attach the suggested tags under the tag root to the selected images"),
    clicked_callback = function() apply_tags() refresh_current() end,
  }
  w.describe_button = dt.new_widget("button") {
    label = _("write description"),
    tooltip = _("write the critique into the selected images' description"),
    clicked_callback = function() write_description() end,
  }
  w.rate_button = dt.new_widget("button") {
    label = _("rate from score"),
    tooltip = _("star rating from the score: 0-2 one star, 2-4 two, 4-6 three, 6-8 four, 8-10 five"),
    clicked_callback = function() rate_from_score() end,
  }
  w.saliency_button = dt.new_widget("button") {
    label = _("show saliency"),
    tooltip = _("open the image in ase-viewer with its saliency overlay"),
    clicked_callback = function() show_saliency() end,
  }
  w.overlay_button = dt.new_widget("button") {
    label = _("import overlay"),
    tooltip = _("import the saliency map beside the image and group it with the image"),
    clicked_callback = function() import_overlay() end,
  }
  w.container = dt.new_widget("box") {
    orientation = "vertical",
    w.image_label,
    w.score,
    w.critique,
    dt.new_widget("section_label") { label = _("attributes") },
    w.attributes,
    dt.new_widget("section_label") { label = _("suggested tags") },
    w.tags,
    dt.new_widget("separator") {},
    w.critique_button,
    dt.new_widget("box") { orientation = "horizontal", w.apply_tags_button, w.describe_button },
    dt.new_widget("box") { orientation = "horizontal", w.rate_button, w.saliency_button },
    w.overlay_button,
    w.status,
  }
  display(nil)
end

local function install_module()
  if ase.module_installed then return end
  dt.register_lib(MODULE, _("ASE critic"), true, true,
    { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
    ase.widgets.container, nil, nil)
  ase.module_installed = true
  refresh_current()
end

local function register_events()
  dt.register_event(EVENT, "post-import-image", on_import)
  if not has_gui then return end
  dt.register_event(EVENT, "mouse-over-image-changed", function(event, image)
    if image then display(image) else display(dt.gui.selection()[1]) end
  end)
  pcall(dt.register_event, EVENT, "selection-changed", function() refresh_current() end)
  dt.register_event(EVENT, "shortcut", function() critique_selection() end, _("ASE critic: critique selection"))
end

local function destroy_events()
  dt.destroy_event(EVENT, "post-import-image")
  if not has_gui then return end
  dt.destroy_event(EVENT, "mouse-over-image-changed")
  pcall(dt.destroy_event, EVENT, "selection-changed")
  dt.destroy_event(EVENT, "shortcut")
end

local function cleanup()
  cancel_all()  -- no ase-client outlives darktable
  local dir = ase.session_dir
  if dir and dir:match("_ase_critic$") then os.execute("rm -rf " .. sh_quote(dir)) end
  ase.session_dir = nil
end

-- -------------------------------------------------------------------------------------------------
-- main
--
-- darktable runs luarc in a worker thread while its main thread is still starting up. Until GTK's main loop
-- runs, a Lua call that touches GTK (creating a widget, registering a preference or a lib, dt.gui.selection)
-- can run on that worker thread instead of the main thread, and darktable 4.2 deadlocks (newer versions can
-- crash: darktable issue #22357). So the script only schedules its setup here, and the setup waits for the
-- lighttable and then a little longer before it touches the GUI. The panel appears a moment after startup.

local STARTUP_DELAY_MS = 2500

local function setup()
  if has_gui then
    local waited = 0
    while waited < 60000 and not dt.control.ending do
      local ok, view = pcall(dt.gui.current_view)
      if ok and view then break end
      dt.control.sleep(250)
      waited = waited + 250
    end
    dt.control.sleep(STARTUP_DELAY_MS)
    if dt.control.ending then return end
  end
  register_preferences()
  register_events()
  pcall(dt.register_event, EVENT .. "_exit", "exit", cleanup)
  if has_gui then
    build_widgets()
    if dt.gui.current_view().id == "lighttable" then
      install_module()
    elseif not ase.event_registered then
      dt.register_event(EVENT, "view-changed", function(event, old_view, new_view)
        if new_view.id == "lighttable" then install_module() end
      end)
      ase.event_registered = true
    end
  end
  ase.setup_done = true
end

if has_gui then
  dt.control.dispatch(function()
    local ok, err = pcall(setup)
    if not ok then dt.print_error("[ase_critic] setup failed: " .. tostring(err)) end
  end)
else
  -- darktable-cli: no panel, no preferences (registering them hangs without a GUI), no import hook
  ase.setup_done = true
end

local function destroy()
  if not ase.setup_done then return end
  destroy_events()
  if has_gui and ase.module_installed then dt.gui.libs[MODULE].visible = false end
end

local function restart()
  if not ase.setup_done then return end
  register_events()
  if has_gui and ase.module_installed then dt.gui.libs[MODULE].visible = true end
end

local function show()
  if has_gui and ase.module_installed then dt.gui.libs[MODULE].visible = true end
end

script_data.destroy = destroy
script_data.destroy_method = "hide"
script_data.restart = restart
script_data.show = show

-- for tests and other scripts: require "ase/ase_critic" returns this table
script_data.widgets = ase.widgets
script_data.critique_images = critique_images
script_data.critique_selection = critique_selection
script_data.apply_tags = apply_tags
script_data.write_description = write_description
script_data.rate_from_score = rate_from_score
script_data.show_saliency = show_saliency
script_data.import_overlay = import_overlay
script_data.display = display
script_data.result_for = result_for
script_data.busy = busy
script_data.ready = function() return ase.setup_done == true end
script_data.cancel_all = cancel_all
script_data.parse_lines = parse_lines
script_data.rating_from_score = rating_from_score
script_data.reroot = reroot
script_data.sh_quote = sh_quote

return script_data
