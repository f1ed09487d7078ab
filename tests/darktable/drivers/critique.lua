-- critique selection -> text shown; then the buttons: apply tags, write description, rate from score,
-- import overlay, show saliency; plus the line parser on hand-made output
local dt = require "darktable"
local H = dofile(os.getenv("ASE_DT_HARNESS"))
local ase = require "ase/ase_critic"

H.run(function()
  local root = H.env("ASE_DT_TAG_ROOT")
  local w = ase.widgets
  for _, name in ipairs({ "critique", "score", "attributes", "tags", "status", "critique_button",
                          "apply_tags_button", "describe_button", "rate_button", "saliency_button",
                          "overlay_button" }) do
    assert(w[name], "widget missing: " .. name)
  end
  H.report("lib", tostring(dt.gui.libs.ase_critic ~= nil))

  local images = {}
  for _, path in ipairs(H.lines(H.env("ASE_DT_IMAGES"))) do
    local image = assert(dt.database.import(path), "import failed: " .. path)
    table.insert(images, image)
  end
  dt.gui.selection(images)

  -- critique selection: the click only starts a background job
  local t0 = os.time()
  w.critique_button.clicked_callback(w.critique_button)
  H.report("click_returned_s", os.time() - t0)
  H.report("busy_after_click", ase.busy())
  assert(H.wait(function() return not ase.busy() end, 90), "the critique did not finish")
  H.report("status", w.status.label)
  H.report("text_view", w.critique.text)
  H.report("score_label", w.score.label)
  H.report("attributes_label", w.attributes.label)
  H.report("tags_label", w.tags.label)
  for i, image in ipairs(images) do H.report_image("before" .. i, image, root, ase) end

  -- the buttons act on the selection
  w.apply_tags_button.clicked_callback(w.apply_tags_button)
  w.describe_button.clicked_callback(w.describe_button)
  w.rate_button.clicked_callback(w.rate_button)
  for i, image in ipairs(images) do H.report_image("after" .. i, image, root, ase) end

  -- a second critique of the first image (served from the daemon's store) replaces, not adds, tags
  ase.critique_images({ images[1] })
  H.report("recritique.tags", H.tags(images[1], root))

  -- import overlay: the saliency map beside the photo, grouped with it
  dt.gui.selection({ images[1] })
  w.overlay_button.clicked_callback(w.overlay_button)
  local members = images[1]:get_group_members()
  H.report("group_size", #members)
  for _, m in ipairs(members) do
    if m.id ~= images[1].id then H.report("overlay.file", tostring(m)) end
  end

  -- show saliency: the viewer command runs detached with the image
  w.saliency_button.clicked_callback(w.saliency_button)
  local args_file = H.env("ASE_DT_VIEWER_ARGS")
  H.report("viewer_ran", H.wait(function() return H.file_exists(args_file) end, 10))

  -- the parser on hand-made output: escapes, errors, garbage, a block without score
  local blocks, garbage = ase.parse_lines(table.concat({
    "noise before any block",
    "image\t/x/a\\tb.jpg", "score\t8.000", "rating\t5", "tag\taesthetics|focus|sharp", "attr.focus\tsharp",
    "text\tline one\\nline two \\\\ done", "future_key\tignored", "cached\ttrue", "model\tm@1", "end",
    "image\t/x/c.jpg", "error\tnot_found\t/x/c.jpg: no such file", "end",
    "image\t/x/d.jpg", "score\tnot-a-number", "text\tx", "end",
  }, "\n"))
  H.report("parse.n", #blocks)
  H.report("parse.garbage", #garbage)
  H.report("parse.1.image", blocks[1].image)
  H.report("parse.1.text", blocks[1].text)
  H.report("parse.1.rating", blocks[1].rating)
  H.report("parse.1.cached", blocks[1].cached)
  H.report("parse.2.error", blocks[2].error.code .. "|" .. blocks[2].error.message)
  H.report("parse.3.error", blocks[3].error and blocks[3].error.code or "none")
  H.report("reroot", ase.reroot("aesthetics|exposure|underexposed", "critic|ase"))
  local ratings = {}
  for _, s in ipairs({ 0, 1.999, 1.9951, 2, 5.5, 7.999, 8, 10, 11, -1 }) do
    table.insert(ratings, ase.rating_from_score(s))
  end
  H.report("ratings", table.concat(ratings, ","))

  -- script_manager: stop (the panel is hidden, the events go), start again, show
  ase.destroy()
  H.report("destroyed.visible", dt.gui.libs.ase_critic.visible)
  ase.restart()
  H.report("restarted.visible", dt.gui.libs.ase_critic.visible)
  H.report("destroy_method", ase.destroy_method)
end)
