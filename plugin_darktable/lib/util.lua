--[[
    ase/lib/util: strings, files and shell quoting; plain Lua, no darktable
]]

local util = {}

-- one word for /bin/sh, whatever the string holds (spaces, quotes, $, backslashes, newlines)
function util.sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function util.file_exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

function util.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

function util.copy_file(src, dst)
  local data = util.read_file(src)
  if not data then return false end
  local f = io.open(dst, "wb")
  if not f then return false end
  f:write(data)
  f:close()
  return true
end

function util.trim(s)
  return (tostring(s or ""):gsub("^%s+", ""):gsub("%s+$", ""))
end

function util.last_line(s)
  local last = ""
  for line in tostring(s or ""):gmatch("[^\n]+") do
    if util.trim(line) ~= "" then last = util.trim(line) end
  end
  return last
end

function util.shorten(s, n)
  s = tostring(s or "")
  if #s <= n then return s end
  -- cut on a UTF-8 character boundary
  local cut = n
  while cut > 1 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do
    cut = cut - 1
  end
  return s:sub(1, cut) .. "…"
end

return util
