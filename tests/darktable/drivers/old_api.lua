-- the plugin on a Lua API older than it needs (the test patched its MIN_API): it must have refused to load,
-- returning script_manager's table and loading nothing past the API check
local H = dofile(os.getenv("ASE_DT_HARNESS"))

H.run(function()
  local ase = require "ase/ase_critic"
  local loaded = {}
  for name in pairs(package.loaded) do
    if name:match("^ase/lib/") then table.insert(loaded, name) end
  end
  table.sort(loaded)
  H.report("loaded_modules", table.concat(loaded, ","))
  H.report("has_ready", tostring(ase.ready ~= nil))
  H.report("metadata.name", ase.metadata and ase.metadata.name or "")
end, { wait_ready = false })
