--[[
    ase/lib/rating: star rating from the critic's score; plain Lua, no darktable
]]

local rating = {}

-- xmp:Rating from the 0..10 score: five equal bands, lower bound included ([0,2) 1 star ... [8,10] 5 stars),
-- the score first rounded to two decimals and clamped (ase_daemon.xmp.rating_from_score). Only used when
-- ase-client printed no `rating` line.
function rating.from_score(score)
  local s = math.floor(score * 100 + 0.5) / 100
  s = math.min(10, math.max(0, s))
  return math.min(5, math.floor(s / 2) + 1)
end

-- the stars a critique gives: the client's `rating`, else the mapping above
function rating.of(res)
  return res.rating or rating.from_score(res.score)
end

-- "★★★★☆"
function rating.stars(n)
  n = math.max(0, math.min(5, n or 0))
  return string.rep("★", n) .. string.rep("☆", 5 - n)
end

return rating
