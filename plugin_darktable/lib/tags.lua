--[[
    ase/lib/tags: the critic's tags on an image, under the user's tag root
]]

local dt = require "darktable"
local prefs = require "ase/lib/prefs"

local tags = {}

-- "aesthetics|exposure|underexposed" -> "<root>|exposure|underexposed"
function tags.reroot(tag, root)
  local rest = tag:match("^[^|]*|(.+)$")
  return root .. "|" .. (rest or tag)
end

-- the critique's tags as they are attached (under the tag root), in the critique's order
function tags.wanted(res, root)
  local out = {}
  for _i, t in ipairs(res.tags) do table.insert(out, tags.reroot(t, root or prefs.tag_root())) end
  return out
end

-- attach the critique's tags; the critic owns the tags under its root: the new critique replaces the old one's.
-- Returns how many tags the image has under the root now.
function tags.apply(image, res)
  local root = prefs.tag_root()
  local wanted = {}
  for _i, name in ipairs(tags.wanted(res, root)) do wanted[name] = true end
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

return tags
