--[[
    ase/lib/json: decode one JSON value (a line of `ase-client cull --json` or `ase-mllm learn --json`);
    plain Lua, no darktable

    json.decode(text) returns the value (objects and arrays as tables, null as json.null), or nil and why.
    Only decoding: the plugin never writes JSON. \uXXXX escapes (surrogate pairs included) become UTF-8.
]]

local json = {}

json.null = setmetatable({}, { __tostring = function() return "null" end })

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }

local function utf8_char(cp)
  if utf8 and utf8.char then return utf8.char(cp) end
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 | (cp >> 6), 0x80 | (cp & 0x3F)) end
  if cp < 0x10000 then
    return string.char(0xE0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F))
  end
  return string.char(0xF0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3F), 0x80 | ((cp >> 6) & 0x3F), 0x80 | (cp & 0x3F))
end

local decode_value

local function skip(s, i)
  return s:find("[^ \t\r\n]", i) or #s + 1
end

local function decode_string(s, i)
  -- s:sub(i, i) == '"'
  local parts, j = {}, i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then error("unterminated string at " .. i) end
    table.insert(parts, s:sub(j, k - 1))
    if s:sub(k, k) == '"' then return table.concat(parts), k + 1 end
    local c = s:sub(k + 1, k + 1)
    if c == "u" then
      local cp = tonumber(s:sub(k + 2, k + 5), 16)
      if not cp then error("bad \\u escape at " .. k) end
      j = k + 6
      if cp >= 0xD800 and cp <= 0xDBFF and s:sub(j, j + 1) == "\\u" then
        local lo = tonumber(s:sub(j + 2, j + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
          j = j + 6
        end
      end
      table.insert(parts, utf8_char(cp))
    elseif ESCAPES[c] then
      table.insert(parts, ESCAPES[c])
      j = k + 2
    else
      error("bad escape at " .. k)
    end
  end
end

local function decode_container(s, i, close, on_item)
  i = skip(s, i + 1)
  if s:sub(i, i) == close then return i + 1 end
  while true do
    i = on_item(i)
    i = skip(s, i)
    local c = s:sub(i, i)
    if c == close then return i + 1 end
    if c ~= "," then error("expected ',' or '" .. close .. "' at " .. i) end
    i = skip(s, i + 1)
  end
end

decode_value = function(s, i)
  i = skip(s, i)
  local c = s:sub(i, i)
  if c == "{" then
    local obj = {}
    local j = decode_container(s, i, "}", function(k)
      if s:sub(k, k) ~= '"' then error("expected a key at " .. k) end
      local key, after = decode_string(s, k)
      after = skip(s, after)
      if s:sub(after, after) ~= ":" then error("expected ':' at " .. after) end
      local value
      value, after = decode_value(s, after + 1)
      obj[key] = value
      return after
    end)
    return obj, j
  elseif c == "[" then
    local arr = {}
    local j = decode_container(s, i, "]", function(k)
      local value, after = decode_value(s, k)
      table.insert(arr, value)
      return after
    end)
    return arr, j
  elseif c == '"' then
    return decode_string(s, i)
  end
  for word, value in pairs({ ["true"] = true, ["false"] = false, null = json.null }) do
    if s:sub(i, i + #word - 1) == word then return value, i + #word end
  end
  local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if num and num ~= "" and tonumber(num) then return tonumber(num), i + #num end
  error("unexpected character at " .. i .. ": " .. (c ~= "" and c or "end of text"))
end

-- the value `text` holds; nil, message when it is not JSON
function json.decode(text)
  local ok, value, after = pcall(decode_value, text, 1)
  if not ok then return nil, tostring(value) end
  if skip(text, after) <= #text then return nil, "trailing text at " .. after end
  return value
end

return json
