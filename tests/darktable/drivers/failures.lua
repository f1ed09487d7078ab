-- daemon down, client missing, garbage output, a silent daemon, cancel: a message, nothing applied, no hang
local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))
local ase = require "ase/ase_critic"

local function set(name, value)
  dt.preferences.write("ase_critic", name, "string", value)
end

H.run(function()
  local root = H.env("ASE_DT_TAG_ROOT")
  local image = assert(dt.database.import(H.env("ASE_DT_IMAGE")))
  dt.gui.selection({ image })
  local client = dt.preferences.read("ase_critic", "client_cmd", "string")

  local function case(name)
    local t0 = os.time()
    local results, failures, message = ase.critique_images({ image })
    local n = 0
    for _ in pairs(results) do n = n + 1 end
    H.report(name .. ".results", n)
    H.report(name .. ".failures", failures)
    H.report(name .. ".message", message or "")
    H.report(name .. ".seconds", os.time() - t0)
    H.report(name .. ".status", ase.widgets.status.label)
    H.report(name .. ".text_view", ase.widgets.critique.text)
  end

  set("endpoint", H.env("ASE_DT_DOWN_ENDPOINT"))
  case("down")
  set("endpoint", H.env("ASE_DT_SILENT_ENDPOINT"))
  case("silent")
  set("endpoint", "")
  set("client_cmd", H.env("ASE_DT_MISSING_CLIENT"))
  case("missing")
  set("client_cmd", H.env("ASE_DT_GARBAGE_CLIENT"))
  case("garbage")
  set("client_cmd", H.env("ASE_DT_BADBLOCK_CLIENT"))
  case("badblock")

  -- cancel a critique that would take a minute
  set("client_cmd", H.env("ASE_DT_SLOW_CLIENT"))
  local finished = false
  dt.control.dispatch(function()
    local _r, _f, message = ase.critique_images({ image })
    H.report("cancel.message", message or "")
    finished = true
  end)
  H.wait(function() return ase.busy() end, 5)
  dt.control.sleep(500)
  -- while the critique runs, darktable's GUI thread still answers (dt.gui.selection runs on it)
  local t1 = os.time()
  for _ = 1, 20 do dt.gui.selection() end
  H.report("gui_responsive_s", os.time() - t1)
  local t0 = os.time()
  ase.cancel_all()
  H.report("cancel.finished", H.wait(function() return finished end, 10))
  H.report("cancel.seconds", os.time() - t0)

  set("client_cmd", client)
  H.report_image("image", image, root, ase)
end)
