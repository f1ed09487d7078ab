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
      * cull the selection (background job): bursts grouped with darktable's grouping (leader = the pick), the
        defective frames rejected, each photo's decision and reason shown in the panel
      * show a personal score next to the score (preference "profile") and learn that profile from the current
        collection's ratings ("learn from my ratings", background job)

    The images are critiqued as you developed them: each is exported as a JPEG of at most 1024 px through
    darktable's own pipeline, and the original file is used only when that export fails.

    ADDITIONAL SOFTWARE NEEDED FOR THIS SCRIPT
      * ase-client and a running ase-daemon (the ASE-MLLM project; `./install.sh` installs both)
      * ase-viewer for "show saliency" (optional)

    USAGE
      * python plugin_darktable/install_plugin.py   (or copy this file to <configdir>/lua/ase/ase_critic.lua,
        the folder lib/ beside it to <configdir>/lua/ase/lib/, and add the line `require "ase/ase_critic"` to
        <configdir>/luarc)
      * start ase-daemon, start darktable, open the "ASE critic" panel on the right of the lighttable
      * preferences: global preferences > lua options > "ASE critic: ..."

    The script talks to the daemon only through `ase-client ... critique --format lines` and `ase-client cull --json
    --progress`, and runs `ase-mllm learn --json` for the profile; docs/darktable.md
    describes the preferences, the buttons and the limits per darktable version.

    This file is the entry: the API check, script_manager's hooks, the start-up (preferences, events, the panel)
    and the table `require "ase/ase_critic"` returns. The work is done by the modules in ase/lib/:
      api (the minimum API check)   prefs (preferences)   state (the session's shared state, the log)
      lines (ase-client's output)   rating (score -> stars)   tags   apply (tags, description, rating)
      client (export, ase-client)   critique (the background job)   auto (auto mode)   overlay (saliency)
      panel (the widgets)   cull (cull selection)   learn (learn from my ratings)
      proc (long commands in a darktable job)   json (decoder)   util, i18n (plain helpers)
]]

local dt = require "darktable"

-- install_plugin.py --client PATH rewrites the next line; the preference "client_cmd" wins when set
local DEFAULT_CLIENT_CMD = "ase-client"

local MIN_API = "9.0.0"  -- darktable 4.2; anything newer is detected with pcall where it is used
local EVENT = "ase_critic"

-- return data structure for script_manager

local script_data = {}

script_data.metadata = {
  name = "ase_critic",
  purpose = "aesthetic critiques, scores, tags and ratings from the ASE-MLLM daemon",
  author = "ASE-MLLM authors",
  help = "docs/darktable.md in the ASE-MLLM project",
}

script_data.destroy = nil
script_data.destroy_method = nil
script_data.restart = nil
script_data.show = nil

-- the modules are installed beside this file (<configdir>/lua/ase/lib/): say so when they are missing
local found, api = pcall(require, "ase/lib/api")
if not found then
  dt.print_error("[ase_critic] " .. tostring(api))
  dt.print("ERROR: ase_critic not loaded: its modules (lua/ase/lib/) are missing; install the plugin with " ..
    "plugin_darktable/install_plugin.py")
  return script_data
end

if not api.check_min_api_version(MIN_API, "ase_critic", "darktable 4.2") then
  return script_data
end

local _ = require "ase/lib/i18n"
local apply = require "ase/lib/apply"
local auto = require "ase/lib/auto"
local client = require "ase/lib/client"
local critique = require "ase/lib/critique"
local cull = require "ase/lib/cull"
local json = require "ase/lib/json"
local learn = require "ase/lib/learn"
local lines = require "ase/lib/lines"
local overlay = require "ase/lib/overlay"
local panel = require "ase/lib/panel"
local prefs = require "ase/lib/prefs"
local rating = require "ase/lib/rating"
local state = require "ase/lib/state"
local tags = require "ase/lib/tags"
local util = require "ase/lib/util"

script_data.metadata.purpose = _(script_data.metadata.purpose)
prefs.DEFAULTS.client_cmd = DEFAULT_CLIENT_CMD

local MODULE = prefs.MODULE
local has_gui = state.has_gui

-- -------------------------------------------------------------------------------------------------
-- events and the panel

local function install_module()
  if state.module_installed then return end
  dt.register_lib(MODULE, _("ASE critic"), true, true,
    { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
    state.widgets.container, nil, nil)
  state.module_installed = true
  panel.refresh_current()
end

local function register_events()
  dt.register_event(EVENT, "post-import-image", auto.on_import)
  if not has_gui then return end
  dt.register_event(EVENT, "mouse-over-image-changed", function(event, image)
    if image then panel.display(image) else panel.display(dt.gui.selection()[1]) end
  end)
  pcall(dt.register_event, EVENT, "selection-changed", function() panel.refresh_current() end)
  dt.register_event(EVENT, "shortcut", function() critique.selection() end, _("ASE critic: critique selection"))
end

local function destroy_events()
  dt.destroy_event(EVENT, "post-import-image")
  if not has_gui then return end
  dt.destroy_event(EVENT, "mouse-over-image-changed")
  pcall(dt.destroy_event, EVENT, "selection-changed")
  dt.destroy_event(EVENT, "shortcut")
end

local function cleanup()
  critique.cancel_all()  -- no ase-client outlives darktable
  client.remove_session_dir()
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
  prefs.register()
  register_events()
  pcall(dt.register_event, EVENT .. "_exit", "exit", cleanup)
  if has_gui then
    panel.build({
      critique_selection = critique.selection,
      apply_tags = apply.tags,
      write_description = apply.description,
      rate_from_score = apply.rating,
      show_saliency = overlay.show,
      import_overlay = overlay.import,
      cull_selection = cull.selection,
      learn = learn.collection,
    })
    if dt.gui.current_view().id == "lighttable" then
      install_module()
    elseif not state.event_registered then
      dt.register_event(EVENT, "view-changed", function(event, old_view, new_view)
        if new_view.id == "lighttable" then install_module() end
      end)
      state.event_registered = true
    end
  end
  state.setup_done = true
end

if has_gui then
  dt.control.dispatch(function()
    local ok, err = pcall(setup)
    if not ok then dt.print_error("[ase_critic] setup failed: " .. tostring(err)) end
  end)
else
  -- darktable-cli: no panel, no preferences (registering them hangs without a GUI), no import hook
  state.setup_done = true
end

-- -------------------------------------------------------------------------------------------------
-- script_manager

local function destroy()
  if not state.setup_done then return end
  destroy_events()
  if has_gui and state.module_installed then dt.gui.libs[MODULE].visible = false end
end

local function restart()
  if not state.setup_done then return end
  register_events()
  if has_gui and state.module_installed then dt.gui.libs[MODULE].visible = true end
end

local function show()
  if has_gui and state.module_installed then dt.gui.libs[MODULE].visible = true end
end

script_data.destroy = destroy
script_data.destroy_method = "hide"
script_data.restart = restart
script_data.show = show

-- for tests and other scripts: require "ase/ase_critic" returns this table
script_data.widgets = state.widgets
script_data.critique_images = critique.images
script_data.critique_selection = critique.selection
script_data.apply_tags = apply.tags
script_data.write_description = apply.description
script_data.rate_from_score = apply.rating
script_data.show_saliency = overlay.show
script_data.import_overlay = overlay.import
script_data.display = panel.display
script_data.result_for = function(image) return image and state.cache[image.id] or nil end
script_data.busy = critique.busy
script_data.ready = function() return state.setup_done == true end
script_data.cancel_all = critique.cancel_all
script_data.jobs_running = function()  -- darktable jobs of this script in progress (critiques, culls, learning)
  local n = 0
  for _run in pairs(state.jobs) do n = n + 1 end
  return n
end
script_data.parse_lines = lines.parse
script_data.rating_from_score = rating.from_score
script_data.reroot = tags.reroot
script_data.sh_quote = util.sh_quote
script_data.cull_images = cull.images
script_data.cull_selection = cull.selection
script_data.cull_for = function(image) return image and state.culls[image.id] or nil end
script_data.learn_images = learn.images
script_data.learn_collection = learn.collection
script_data.rated_images = learn.rated_images
script_data.json_decode = json.decode

return script_data
