--[[
    ase/lib/i18n: `_` for the plugin's messages, through darktable's gettext when there is one

    Works without darktable too (a plain Lua interpreter running the parser): messages stay untranslated.
]]

local gettext = function(msgid) return msgid end

do
  local ok, dt = pcall(require, "darktable")
  if ok and type(dt) == "table" then
    local found, fn = pcall(function() return dt.gettext.gettext end)
    if found and type(fn) == "function" then gettext = fn end
  end
end

local function _(msgid)
  return gettext(msgid)
end

return _
