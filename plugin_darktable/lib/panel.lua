--[[
    ase/lib/panel: the lighttable panel's widgets and what they show (score, critique, attributes, tags)
]]

local dt = require "darktable"
local _ = require "ase/lib/i18n"
local rating = require "ase/lib/rating"
local state = require "ase/lib/state"
local tags = require "ase/lib/tags"
local util = require "ase/lib/util"

local panel = {}

function panel.set_status(msg)
  if state.widgets.status then state.widgets.status.label = msg or "" end
end

function panel.set_learn_result(text)
  if state.widgets.learn_result then state.widgets.learn_result.label = text or "" end
end

-- the image's last cull decision: "PICK (#1 of 4): reason"; "" when it was not culled this session
local function cull_line(image)
  local d = image and state.culls[image.id]
  if not d then return "" end
  local names = { pick = _("PICK"), keep = _("keep"), reject = _("REJECT") }
  local size = tonumber(d.group_size) or 1
  local where = size > 1 and string.format(_(" (#%d of %d)"), tonumber(d.rank) or 0, size) or ""
  return (names[d.decision] or tostring(d.decision)) .. where .. ": " .. tostring(d.reason or "")
end

local function clear_result(w)
  w.score.label = ""
  w.attributes.label = ""
  w.attributes.tooltip = ""
  w.tags.label = ""
end

-- show `image`'s critique (or why it has none); nil: no image
function panel.display(image)
  local w = state.widgets
  if not state.has_gui or not w.critique then return end
  state.shown_id = image and image.id or nil
  local culled = cull_line(image)
  w.cull.label = util.shorten(culled, 70)
  w.cull.tooltip = culled
  if not image then
    w.image_label.label = _("no image")
    clear_result(w)
    w.critique.text = _("hover over or select an image, then click \"critique selection\"")
    return
  end
  w.image_label.label = image.filename
  local res = state.cache[image.id]
  if not res then
    clear_result(w)
    local err = state.errors[image.id]
    w.critique.text = err and (_("critique failed: ") .. err)
      or _("not critiqued yet: click \"critique selection\"")
    return
  end
  local personal = res.personal_score and string.format(_("   personal %.1f / 10"), res.personal_score) or ""
  w.score.label = string.format(_("score %.1f / 10%s   %s"), res.score, personal, rating.stars(rating.of(res)))
  w.critique.text = res.text
  local attrs, full = {}, {}
  for _i, a in ipairs(res.attributes) do
    local line = a.name:gsub("_", " ") .. ": " .. a.value
    table.insert(attrs, util.shorten(line, 60))
    table.insert(full, line)
  end
  w.attributes.label = table.concat(attrs, "\n")
  w.attributes.tooltip = table.concat(full, "\n")
  local names = tags.wanted(res)
  w.tags.label = #names > 0 and table.concat(names, "\n") or _("(no tags suggested)")
end

-- darktable's images to act on: the hovered image, else the selection
function panel.target_images()
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

function panel.refresh_current()
  if not state.has_gui then return end
  local hovered = dt.gui.hovered
  if hovered then
    panel.display(hovered)
  else
    panel.display(dt.gui.selection()[1])
  end
end

local function label(text)
  local l = dt.new_widget("label") { label = text }
  pcall(function() l.halign = "start" end)
  return l
end

local function button(text, tooltip, fn)
  return dt.new_widget("button") { label = text, tooltip = tooltip, clicked_callback = function() fn() end }
end

-- build the widgets into state.widgets; actions: the buttons' functions (critique_selection, apply_tags,
-- write_description, rate_from_score, show_saliency, import_overlay, cull_selection, learn), called without
-- arguments
function panel.build(actions)
  local w = state.widgets
  w.image_label = dt.new_widget("section_label") { label = _("no image") }
  w.score = label("")
  w.critique = dt.new_widget("text_view") { text = "" }
  pcall(function() w.critique.editable = false end)
  w.attributes = label("")
  w.tags = label("")
  w.status = label("")
  w.cull = label("")
  w.learn_result = label("")
  pcall(function() w.status.ellipsize = "middle" end)
  w.critique_button = button(_("critique selection"),
    _("export the selected images as developed and critique them in the background"), actions.critique_selection)
  w.apply_tags_button = button(_("apply tags"),
    _("attach the suggested tags under the tag root to the selected images"),
    function() actions.apply_tags() panel.refresh_current() end)
  w.describe_button = button(_("write description"),
    _("write the critique into the selected images' description"), actions.write_description)
  w.rate_button = button(_("rate from score"),
    _("star rating from the score: 0-2 one star, 2-4 two, 4-6 three, 6-8 four, 8-10 five"), actions.rate_from_score)
  w.saliency_button = button(_("show saliency"),
    _("open the image in ase-viewer with its saliency overlay"), actions.show_saliency)
  w.overlay_button = button(_("import overlay"),
    _("import the saliency map beside the image and group it with the image"), actions.import_overlay)
  w.cull_button = button(_("cull selection"),
    _("group the bursts (leader: the best frame) and reject the defective frames, each with a reason; " ..
      "a background job"), actions.cull_selection)
  w.learn_button = button(_("learn from my ratings"),
    _("learn a personal profile from the stars and rejects of the current collection's rated images " ..
      "(preferences: profile); a background job"), actions.learn)
  w.container = dt.new_widget("box") {
    orientation = "vertical",
    w.image_label,
    w.score,
    w.cull,
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
    dt.new_widget("section_label") { label = _("culling and your taste") },
    dt.new_widget("box") { orientation = "horizontal", w.cull_button, w.learn_button },
    w.learn_result,
    w.status,
  }
  panel.display(nil)
end

return panel
