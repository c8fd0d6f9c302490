#include "fracture/data/dataset.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fracture/data/boxes.h"
#include "fracture/data/csv.h"
#include "fracture/data/image_io.h"
#include "fracture/util/atomic_file.h"

namespace fs = std::filesystem;

namespace fracture::data {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<fs::path> images_in(const fs::path& dir) {
  const auto files = image_files_in(dir.string());
  return {files.begin(), files.end()};
}

bool is_negative_name(const std::string& name) {
  const std::string n = lower(name);
  for (const char* p : {"non", "not", "no_", "no ", "no-", "normal", "negative", "healthy"})
    if (n.rfind(p, 0) == 0) return true;
  return false;
}

std::map<std::string, size_t> header_index(const std::vector<std::string>& header) {
  std::map<std::string, size_t> idx;
  for (size_t i = 0; i < header.size(); ++i) {
    std::string h = lower(header[i]);
    if (i == 0 && h.rfind("\xef\xbb\xbf", 0) == 0) h = h.substr(3);  // UTF-8 BOM
    idx[h] = i;
  }
  return idx;
}

bool is_label_number(const std::string& l) {
  return !l.empty() && l.size() < 9 && l.find_first_not_of("0123456789") == std::string::npos;
}

// The classes a manifest declares, each label checked. Labels are either all
// integers numbering the classes 0..K-1 without gaps (names from a 'class'
// column, which `fracture split` writes, else the numbers), or all class
// names (ordered like ImageFolder's). An empty, negative, fractional or
// stray label is an error naming its line: silently it would add a class.
template <typename Get>
std::vector<std::string> manifest_classes(const std::string& csv_path, const std::vector<std::vector<std::string>>& rows,
                                          Get&& get, bool has_class_column) {
  std::vector<std::string> problems;
  auto problem = [&](size_t r, const std::string& what) {
    problems.push_back("line " + std::to_string(r + 1) + ": " + what);
  };
  size_t numbers = 0, names = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::string l = get(rows[r], "label");
    if (get(rows[r], "path").empty()) continue;  // skipped with a warning later
    if (l.empty()) problem(r, "empty label");
    else if (is_label_number(l)) ++numbers;
    else if (l.find_first_not_of("+-0123456789.eE") == std::string::npos) problem(r, "label '" + l + "' is not a class number 0, 1, ...");
    else ++names;
  }
  if (numbers > 0 && names > 0)
    for (size_t r = 1; r < rows.size(); ++r) {
      const std::string l = get(rows[r], "label");
      if (!get(rows[r], "path").empty() && !l.empty() && is_label_number(l) == (numbers < names)) problem(r, "label '" + l + "' mixes numbers and class names");
    }
  std::vector<std::string> classes;
  if (problems.empty() && numbers > 0) {
    std::map<int, std::string> named;  // class number -> its name in the 'class' column
    std::map<int, size_t> first_row;   // class number -> the first row that uses it
    for (size_t r = 1; r < rows.size(); ++r) {
      const std::string l = get(rows[r], "label");
      if (get(rows[r], "path").empty() || !is_label_number(l)) continue;
      const int k = std::stoi(l);
      first_row.emplace(k, r);
      const std::string name = has_class_column ? get(rows[r], "class") : l;
      auto [it, fresh] = named.emplace(k, name.empty() ? l : name);
      if (!fresh && !name.empty() && it->second != name)
        problem(r, "label " + l + " is class '" + it->second + "' above and '" + name + "' here");
    }
    for (int k = 0; problems.empty() && k <= named.rbegin()->first; ++k) {
      if (!named.count(k)) {
        const auto above = named.upper_bound(k);
        problem(first_row.at(above->first), "label " + std::to_string(above->first) + ", but no image has label " +
                                                std::to_string(k) + " (classes are numbered 0..K-1 without gaps)");
        break;
      }
      classes.push_back(named[k]);
    }
    if (problems.empty() && named.size() < 2) problems.push_back("only one class (" + classes[0] + ")");
  } else if (problems.empty()) {
    std::map<std::string, size_t> count;
    for (size_t r = 1; r < rows.size(); ++r)
      if (!get(rows[r], "path").empty()) ++count[get(rows[r], "label")];
    for (const auto& [name, n] : count) {
      classes.push_back(name);
      if (n == 1 && count.size() > 2) spdlog::warn("{}: class '{}' has a single image (a typo in a label?)", csv_path, name);
    }
    classes = order_class_names(classes);
  }
  if (!problems.empty()) {
    std::string msg = csv_path + ": bad labels:";
    for (size_t i = 0; i < problems.size() && i < 8; ++i) msg += "\n  " + problems[i];
    if (problems.size() > 8) msg += "\n  ... " + std::to_string(problems.size()) + " in all";
    throw std::runtime_error(msg);
  }
  return classes;
}

// A data set's name: its folder's (or manifest's stem), e.g. "fracatlas".
std::string source_name(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  if (p.filename() == "." || p.empty()) p = fs::absolute(p).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return fs::is_regular_file(path) ? p.stem().string() : p.filename().string();
}

// Roboflow exports name each augmented copy <original>_<ext>.rf.<hash>.jpg:
// the copies of one original share everything but the hash, and must share a
// side of the split.
std::string roboflow_original(const std::string& file_name) {
  const size_t rf = file_name.rfind(".rf.");
  return rf == std::string::npos || rf == 0 ? std::string{} : file_name.substr(0, rf);
}

}  // namespace

std::vector<std::string> Dataset::sources() const {
  std::vector<std::string> out;
  for (const auto& s : samples)
    if (std::find(out.begin(), out.end(), s.source) == out.end()) out.push_back(s.source);
  return out;
}

std::vector<std::string> order_class_names(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  if (names.size() == 2 && is_negative_name(names[1]) && !is_negative_name(names[0])) std::swap(names[0], names[1]);
  return names;
}

std::vector<Sample> Dataset::subset(const std::string& split) const {
  std::vector<Sample> out;
  for (const auto& s : samples)
    if (s.split == split) out.push_back(s);
  return out;
}

Dataset load_fracatlas(const std::string& root) {
  Dataset d;
  d.kind = "fracatlas";
  d.root = root;
  d.class_names = {"non_fractured", "fractured"};
  const fs::path base(root);
  const auto rows = parse_csv(util::read_file((base / "dataset.csv").string()), (base / "dataset.csv").string());
  if (rows.empty()) throw std::runtime_error(root + "/dataset.csv: empty");
  const auto col = header_index(rows[0]);
  for (const char* need : {"image_id", "fractured"})
    if (!col.count(need)) throw std::runtime_error(root + "/dataset.csv: no '" + std::string(need) + "' column");

  // The folder an image sits in is its label. Where dataset.csv disagrees
  // (IMG0003298.jpg: in Fractured/, fractured=0 but fracture_count=1) the
  // folder wins, with a warning: the folders are what the release's own
  // classification baselines were trained from.
  std::map<std::string, std::pair<fs::path, int>> on_disk;
  for (const auto& [folder, label] : {std::pair{"Non_fractured", 0}, std::pair{"Fractured", 1}}) {
    const fs::path dir = base / "images" / folder;
    if (!fs::is_directory(dir)) throw std::runtime_error(dir.string() + ": missing (not a FracAtlas release folder?)");
    for (const auto& p : images_in(dir)) on_disk[p.filename().string()] = {p, label};
  }
  auto flag = [&](const std::vector<std::string>& row, const char* name) {
    auto it = col.find(name);
    return it != col.end() && it->second < row.size() && row[it->second] == "1";
  };
  std::set<std::string> seen;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const std::string id = row[col.at("image_id")];
    auto it = on_disk.find(id);
    if (it == on_disk.end()) {
      d.warnings.push_back(root + "/dataset.csv: " + id + " listed but not found under images/; skipped");
      continue;
    }
    seen.insert(id);
    Sample s;
    s.path = it->second.first.string();
    s.label = it->second.second;
    s.group = id;
    if (flag(row, "fractured") != (s.label == 1))
      d.warnings.push_back(s.path + ": dataset.csv says fractured=" + (flag(row, "fractured") ? "1" : "0") +
                           " but the file is in " + (s.label ? "Fractured/" : "Non_fractured/") +
                           "; using the folder's label");
    int regions = 0;
    for (const char* reg : {"hand", "leg", "hip", "shoulder"})
      if (flag(row, reg)) { s.region = reg; ++regions; }
    if (flag(row, "mixed") || regions > 1) s.region = "mixed";
    if (s.region.empty()) s.region = "unknown";
    if (col.count("hardware")) s.hardware = flag(row, "hardware") ? 1 : 0;
    d.samples.push_back(s);
  }
  for (const auto& [name, entry] : on_disk)
    if (!seen.count(name)) {
      d.warnings.push_back(entry.first.string() + ": not in dataset.csv; used with its folder's label");
      Sample s;
      s.path = entry.first.string();
      s.label = entry.second;
      s.group = name;
      s.region = "unknown";
      d.samples.push_back(s);
    }
  return d;
}

Dataset load_image_folder(const std::string& root) {
  Dataset d;
  d.kind = "imagefolder";
  d.root = root;
  fs::path base(root);
  // A release that keeps its class folders under images/ beside a README
  // (bone-break-types): the class folders are those of images/.
  if (std::vector<fs::path> dirs; [&] {
        for (const auto& e : fs::directory_iterator(base))
          if (e.is_directory()) dirs.push_back(e.path());
        return dirs.size() == 1 && dirs[0].filename() == "images";
      }())
    base /= "images";
  // With train/ val/ test/ (or valid/) subfolders, each holds the class folders.
  std::vector<std::pair<std::string, fs::path>> parts;
  for (const auto& [split, names] : {std::pair{"train", std::vector<std::string>{"train"}},
                                     std::pair{"val", std::vector<std::string>{"val", "valid", "validation"}},
                                     std::pair{"test", std::vector<std::string>{"test"}}})
    for (const auto& n : names)
      if (fs::is_directory(base / n)) parts.emplace_back(split, base / n);
  if (parts.empty()) parts.emplace_back("", base);

  std::set<std::string> classes;
  for (const auto& [_, dir] : parts)
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory()) classes.insert(e.path().filename().string());
  if (classes.empty()) throw std::runtime_error(root + ": no class folders found");
  d.class_names = order_class_names({classes.begin(), classes.end()});
  for (const auto& [split, dir] : parts)
    for (size_t c = 0; c < d.class_names.size(); ++c) {
      const fs::path cdir = dir / d.class_names[c];
      if (!fs::is_directory(cdir)) continue;
      for (const auto& p : images_in(cdir)) {
        Sample s;
        s.path = p.string();
        s.label = static_cast<int>(c);
        s.split = split;
        // Roboflow's copies of one original (bone-break-types: augmented
        // copies, and panels cut from one journal figure) form one group.
        const std::string original = roboflow_original(p.filename().string());
        s.group = original.empty() ? fs::relative(p, base).string() : (fs::relative(cdir, base) / original).string();
        d.samples.push_back(s);
      }
    }
  if (d.samples.empty()) throw std::runtime_error(root + ": class folders hold no images");
  return d;
}

Dataset load_yolo(const std::string& root) {
  Dataset d;
  d.kind = "yolo";
  d.root = root;
  d.class_names = {"non_fractured", "fractured"};
  const fs::path images = fs::path(root) / "images";
  size_t no_label_file = 0;
  std::string first_missing;
  for (const auto& p : images_in(images)) {
    Sample s;
    s.path = p.string();
    const std::string label_file = box_file_for(s.path);
    if (label_file.empty()) {
      // Ultralytics' reading too: an image without a label file is background.
      if (no_label_file++ == 0) first_missing = s.path;
    } else {
      try {
        s.label = read_yolo_boxes(label_file).empty() ? 0 : 1;
      } catch (const std::exception& e) {
        d.warnings.push_back(std::string(e.what()) + "; " + s.path + " skipped (its label is unknown)");
        continue;
      }
    }
    // images/train/x.jpg: the release's own split (used with --keep-existing).
    const std::string part = p.parent_path() == images ? "" : fs::relative(p.parent_path(), images).begin()->string();
    if (part == "train") s.split = "train";
    if (part == "val" || part == "valid" || part == "validation") s.split = "val";
    if (part == "test") s.split = "test";
    const std::string original = roboflow_original(p.filename().string());
    s.group = original.empty() ? fs::relative(p, images).string() : (fs::path(part) / original).string();
    d.samples.push_back(s);
  }
  if (d.samples.empty()) throw std::runtime_error(images.string() + ": no images");
  if (no_label_file > 0)
    d.warnings.push_back(std::to_string(no_label_file) + " images have no label file under " + root +
                         "/labels/ (e.g. " + first_missing + "); taken as not fractured, as YOLO does");
  return d;
}

namespace {

// A manifest whose rows are split is split in full: a row with no split value
// (an empty cell, or a row cut short) would otherwise send the whole data set
// to a new split, moving test images into training without a word. Unknown
// split names are refused too.
template <typename Get>
void check_manifest_splits(const std::vector<std::vector<std::string>>& rows, const Get& get,
                           const std::string& csv_path) {
  std::vector<size_t> missing, unknown;
  size_t split_rows = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    if (get(rows[r], "path").empty()) continue;
    const std::string split = get(rows[r], "split");
    if (split.empty()) missing.push_back(r + 1);
    else if (split != "train" && split != "val" && split != "test") unknown.push_back(r + 1);
    else ++split_rows;
  }
  auto lines = [](const std::vector<size_t>& v) {
    std::vector<size_t> first(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(v.size(), 10)));
    return fmt::format("{}{}", fmt::join(first, ", "), v.size() > first.size() ? fmt::format(" and {} more", v.size() - first.size()) : "");
  };
  if (!unknown.empty())
    throw std::runtime_error(csv_path + ": line(s) " + lines(unknown) + " name a split other than train, val or test");
  if (!missing.empty() && split_rows > 0)
    throw std::runtime_error(csv_path + ": line(s) " + lines(missing) + " have no split value (an empty cell, or a row cut short) while " +
                             std::to_string(split_rows) + " rows have one: give every row train, val or test (a half-split "
                             "manifest is never split again, which could move test images into training)");
}

}  // namespace

Dataset load_manifest(const std::string& csv_path) { return parse_manifest(util::read_file(csv_path), csv_path); }

Dataset parse_manifest(const std::string& text, const std::string& csv_path) {
  Dataset d;
  d.kind = "manifest";
  d.root = fs::path(csv_path).parent_path().string();
  const auto rows = parse_csv(text, csv_path);
  if (rows.empty()) throw std::runtime_error(csv_path + ": empty manifest");
  const auto col = header_index(rows[0]);
  if (!col.count("path") || !col.count("label"))
    throw std::runtime_error(csv_path + ": manifest needs a header with 'path' and 'label' columns");
  auto get = [&](const std::vector<std::string>& row, const char* name) -> std::string {
    auto it = col.find(name);
    return it != col.end() && it->second < row.size() ? row[it->second] : "";
  };
  d.class_names = manifest_classes(csv_path, rows, get, col.count("class") > 0);
  bool numeric = false;  // labels are class numbers (validated: all or none)
  for (size_t r = 1; r < rows.size() && !numeric; ++r)
    numeric = !get(rows[r], "path").empty() && is_label_number(get(rows[r], "label"));
  const fs::path base = fs::path(csv_path).parent_path();
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    Sample s;
    const fs::path p(get(row, "path"));
    if (p.empty()) {
      d.warnings.push_back(csv_path + ": line " + std::to_string(r + 1) + " has no path; skipped");
      continue;
    }
    s.path = p.is_absolute() ? p.string() : (base / p).lexically_normal().string();
    const std::string l = get(row, "label");
    s.label = numeric ? std::stoi(l)
                      : static_cast<int>(std::find(d.class_names.begin(), d.class_names.end(), l) - d.class_names.begin());
    s.split = get(row, "split");
    s.group = get(row, "group");
    if (s.group.empty()) s.group = s.path;
    s.region = get(row, "region");
    const std::string hw = get(row, "hardware");
    s.hardware = hw == "1" ? 1 : hw == "0" ? 0 : -1;
    s.source = get(row, "source");
    d.samples.push_back(s);
  }
  check_manifest_splits(rows, get, csv_path);
  return d;
}

Dataset load_dataset(const std::string& path) {
  const fs::path p(path);
  if (fs::is_regular_file(p)) return load_manifest(path);
  if (!fs::is_directory(p)) throw std::runtime_error(path + ": no such file or folder");
  Dataset d = fs::is_regular_file(p / "dataset.csv") && fs::is_directory(p / "images") ? load_fracatlas(path)
              : fs::is_directory(p / "images") && fs::is_directory(p / "labels")   ? load_yolo(path)
                                                                                    : load_image_folder(path);
  if (d.kind != "manifest")  // a manifest names its sources itself, or none
    for (auto& s : d.samples) s.source = source_name(path);
  return d;
}

Dataset load_datasets(const std::vector<std::string>& paths) {
  if (paths.empty()) throw std::invalid_argument("no data set given");
  if (paths.size() == 1) return load_dataset(paths[0]);
  Dataset all;
  all.kind = "combined";
  std::set<std::string> taken;
  for (const auto& path : paths) {
    Dataset d = load_dataset(path);
    if (all.class_names.empty()) all.class_names = d.class_names;
    const bool same = d.class_names == all.class_names;
    if (!same && (d.class_names.size() != 2 || all.class_names.size() != 2))
      throw std::runtime_error(path + ": classes (" + fmt::format("{}", fmt::join(d.class_names, ", ")) +
                               ") differ from the first data set's (" + fmt::format("{}", fmt::join(all.class_names, ", ")) + ")");
    if (!same)
      all.warnings.push_back(fmt::format("{}: classes {} / {} taken as {} / {}", path, d.class_names[0], d.class_names[1],
                                         all.class_names[0], all.class_names[1]));
    // Each data set is one source (a manifest may name several); names stay distinct.
    std::map<std::string, std::string> renamed;
    for (const auto& name : d.sources()) {
      const std::string base = name.empty() ? source_name(path) : name;
      std::string unique = base;
      for (int k = 2; taken.count(unique); ++k) unique = base + "-" + std::to_string(k);
      taken.insert(unique);
      renamed[name] = unique;
    }
    for (auto& s : d.samples) {
      s.source = renamed.at(s.source);
      s.group = s.source + ":" + s.group;  // groups are named within a data set
      all.samples.push_back(std::move(s));
    }
    all.warnings.insert(all.warnings.end(), d.warnings.begin(), d.warnings.end());
    all.root = all.root.empty() ? d.root : all.root;
  }
  return all;
}

void write_manifest(const std::string& csv_path, const Dataset& d) {
  const fs::path base = fs::absolute(fs::path(csv_path)).parent_path();
  std::ostringstream out;
  out << "path,label,class,split,group,region,hardware,source\n";
  for (const auto& s : d.samples) {
    const fs::path abs = fs::absolute(s.path).lexically_normal();
    const fs::path rel = abs.lexically_relative(base);
    const bool below = !rel.empty() && rel.native().rfind("..", 0) != 0;
    out << csv_escape(below ? rel.string() : abs.string()) << ',' << s.label << ','
        << csv_escape(d.class_names.at(s.label)) << ',' << s.split << ',' << csv_escape(s.group) << ','
        << csv_escape(s.region) << ',' << (s.hardware < 0 ? "" : std::to_string(s.hardware)) << ','
        << csv_escape(s.source) << '\n';
  }
  util::write_file_atomic(csv_path, out.str());
}

}  // namespace fracture::data
