#pragma once
// Fracture bounding boxes in YOLO text files, one per image, in either of the
// two layouts that hold them:
//  - FracAtlas: <root>/images/<class>/<stem>.jpg -> <root>/Annotations/YOLO/<stem>.txt
//  - Ultralytics: .../images/[<part>/]<stem>.jpg -> .../labels/[<part>/]<stem>.txt
// A line is "class cx cy w h" (a box) or "class x1 y1 x2 y2 ..." (a polygon,
// YOLO's segmentation format, taken by its bounding box), all normalised to
// the image. Training can use them to tell the network where the fracture is
// (train::TrainOptions::box_loss); nothing at inference does.
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

namespace fracture::data {

struct Box {
  float cx = 0, cy = 0, w = 0, h = 0;  // centre and size, fractions of the image's width and height
};

// The label file of an image in either layout above, or empty when there is none.
std::string box_file_for(const std::string& image_path);

// Parses a YOLO label file. Throws std::runtime_error naming the file and line
// for a line that is not five numbers with a box inside the image.
std::vector<Box> read_yolo_boxes(const std::string& path);
// The same from the file's text; `origin` names it in errors.
std::vector<Box> parse_yolo_boxes(const std::string& text, const std::string& origin);

// The boxes of an image: none when it has no label file; nullopt when its
// file cannot be parsed, after a warning naming the file, the line and the
// image, ended by `consequence` ("gets no box loss").
std::optional<std::vector<Box>> image_boxes(const std::string& image_path, const std::string& consequence);

// [h, w] float map of a stretched image's grid: 1 where a cell overlaps a box, else 0.
torch::Tensor box_mask(const std::vector<Box>& boxes, int64_t h, int64_t w);

}  // namespace fracture::data
