--[[
    ase/lib/lines: parse ase-client's `--format lines` output (docs/protocol.md); plain Lua, no darktable

    key<TAB>value lines, one block per image from `image` to `end`; values escape backslash, newline, tab and
    carriage return. A block is { image, score, personal_score, rating, text, tags = { ... },
    attributes = { { name, value } },
    saliency, cached, model, error = { code, message } } with only the fields the client printed; a block
    without a usable score or critique gets a `bad_output` error. tests/fixtures/lines_golden.* pin it down.
]]

local _ = require "ase/lib/i18n"
local util = require "ase/lib/util"

local lines = {}

local UNESCAPES = { n = "\n", t = "\t", r = "\r", ["\\"] = "\\" }

function lines.unescape(s)
  return (s:gsub("\\(.)", function(c) return UNESCAPES[c] or c end))
end

local unescape = lines.unescape

-- a block is complete: check that it has what the plugin needs
local function finish(b)
  if not b.error then
    if type(b.score) ~= "number" then
      b.error = { code = "bad_output", message = _("ase-client printed no score") }
    elseif not b.text then
      b.error = { code = "bad_output", message = _("ase-client printed no critique") }
    end
  end
  return b
end

-- one key<TAB>value line inside a block
local function set_field(block, key, value)
  if key == "score" then
    block.score = tonumber(value)
  elseif key == "personal_score" then
    block.personal_score = tonumber(value)
  elseif key == "rating" then
    local r = tonumber(value)
    if r and r >= 0 and r <= 5 then block.rating = math.floor(r) end
  elseif key == "tag" then
    local t = util.trim(unescape(value))
    if t ~= "" then table.insert(block.tags, t) end
  elseif key:sub(1, 5) == "attr." then
    table.insert(block.attributes, { name = key:sub(6), value = unescape(value) })
  elseif key == "text" then
    block.text = unescape(value)
  elseif key == "saliency" then
    block.saliency = unescape(value)
  elseif key == "cached" then
    block.cached = value == "true"
  elseif key == "model" then
    block.model = unescape(value)
  elseif key == "error" then
    local code, message = value:match("^([^\t]*)\t(.*)$")
    block.error = { code = unescape(code or value), message = unescape(message or "") }
  end  -- other keys: ignored (docs/protocol.md: new keys may be added within version 1)
end

-- a parser fed line by line (as ase-client prints): parser.feed(line) returns the block that line completed
function lines.new_parser()
  -- garbage: lines outside any block (a client that is not ase-client, a Python traceback on stdout, ...)
  local parser = { block = nil, blocks = {}, garbage = {} }

  function parser.feed(line)
    line = line:gsub("\r$", "")
    if line == "" then return nil end
    local key, value = line:match("^([^\t]+)\t(.*)$")
    if not key then key, value = line, "" end
    if key == "end" then
      local b = parser.block
      parser.block = nil
      if not b then return nil end
      table.insert(parser.blocks, finish(b))
      return b
    elseif key == "image" then
      parser.block = { image = unescape(value), tags = {}, attributes = {} }
    elseif not parser.block then
      if key ~= "token" then table.insert(parser.garbage, line) end
    else
      set_field(parser.block, key, value)
    end
    return nil
  end

  return parser
end

-- the whole output at once (tests, tools); returns blocks, garbage
function lines.parse(text)
  local parser = lines.new_parser()
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do parser.feed(line) end
  return parser.blocks, parser.garbage
end

return lines
