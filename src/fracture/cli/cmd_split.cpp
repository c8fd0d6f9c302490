#include <spdlog/spdlog.h>

#include <algorithm>
#include <iostream>
#include <set>

#include "fracture/cli/commands.h"
#include "fracture/data/dataset.h"
#include "fracture/data/split.h"

namespace fracture::cli {

void add_split_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("split", "Write a leak-free, stratified train/val/test manifest");
  struct Args {
    std::vector<std::string> data;
    std::string out = "split.csv";
    data::SplitOptions opt;
    bool no_near = false, no_mirror = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--data", a->data,
                  "FracAtlas, YOLO or ImageFolder folder, or CSV manifest; several (--data A --data B) are split "
                  "each on its own, as sources of one manifest")
      ->required();
  cmd->add_option("-o,--out", a->out, "Manifest to write (CSV: path,label,class,split,group,region,hardware)")
      ->capture_default_str();
  cmd->add_option("--val", a->opt.val_fraction, "Fraction of images for validation")->capture_default_str()->check(CLI::Range(0.0, 0.9));
  cmd->add_option("--test", a->opt.test_fraction, "Fraction of images for test")->capture_default_str()->check(CLI::Range(0.0, 0.9));
  cmd->add_option("--seed", a->opt.seed, "Random seed; the same seed gives the same split")->capture_default_str();
  cmd->add_option("--near-threshold", a->opt.near_duplicate_threshold,
                  "Thumbnail correlation at which two images count as the same radiograph")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 1.0));
  cmd->add_flag("--no-near-duplicates", a->no_near, "Group byte-identical files only");
  cmd->add_flag("--no-mirror-match", a->no_mirror,
                "Compare thumbnails only as they are, not also mirrored or quarter-turned (reproduces splits "
                "made before mirror matching, such as docs/results.md's two-source runs)");
  cmd->add_flag("--keep-existing", a->opt.keep_existing, "Keep the train/val/test folders of an ImageFolder dataset");
  cmd->add_option("--threads", a->opt.threads, "Threads for reading images")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->footer(
      "Images that are byte-identical or near-identical (re-encodings, resized, mirrored or\n"
      "quarter-turned copies) are kept\n"
      "together on one side, and groups are assigned stratified by label and body region.\n\n"
      "Examples:\n  fracture split --data ../shared/data/fracatlas --out runs/split.csv --seed 42\n"
      "  fracture split --data ../shared/data/fracatlas --data ../shared/data/bone-fracture-yolo --out runs/split-both.csv");
  cmd->callback([a] {
    if (a->opt.val_fraction + a->opt.test_fraction > 0.8)
      throw CLI::ValidationError("--val/--test", "together they take " +
                                                   std::to_string(a->opt.val_fraction + a->opt.test_fraction) +
                                                   " of the images; at least 0.2 must stay for training");
    a->opt.near_duplicates = !a->no_near;
    a->opt.mirrored_and_turned = !a->no_mirror;
    data::Dataset d = data::load_datasets(a->data);
    for (const auto& w : d.warnings) spdlog::warn("{}", w);
    for (const auto& source : d.sources())
      spdlog::info("{}: {} images", source.empty() ? "data" : source,
                   std::count_if(d.samples.begin(), d.samples.end(), [&](const auto& s) { return s.source == source; }));
    spdlog::info("{} images, {} classes ({} layout)", d.samples.size(), d.class_names.size(), d.kind);
    const auto rep = data::assign_splits(d, a->opt);
    for (const auto& m : rep.messages) spdlog::warn("{}", m);
    if (!rep.truncated.empty()) {
      spdlog::warn("{} truncated JPEGs (no end marker; the part present is used), e.g. {}", rep.truncated.size(),
                   rep.truncated.front());
      for (const auto& t : rep.truncated) spdlog::debug("truncated: {}", t);
    }
    std::set<std::string> groups;
    for (const auto& s : d.samples) groups.insert(s.group);
    spdlog::info("duplicates: {} byte-identical pairs, {} near-identical pairs ({} of them mirrored or turned); "
                 "{} merges: {} groups of {} images",
                 rep.exact_pairs, rep.near_pairs, rep.turned_pairs, rep.groups_merged, groups.size(), d.samples.size());
    if (!rep.mixed_label_groups.empty())
      spdlog::warn("{} groups hold copies of one picture with different labels, e.g. the group of {} (kept as "
                   "labelled, on one side of the split)",
                   rep.mixed_label_groups.size(), rep.mixed_label_groups.front());
    if (rep.cross_source_groups > 0)
      spdlog::warn("{} groups hold images of more than one source (the same radiograph in two data sets); "
                   "each went to its first image's side",
                   rep.cross_source_groups);
    data::write_manifest(a->out, d);
    spdlog::info("wrote {}", a->out);
    std::cout << data::format_split_counts(d);
  });
}

}  // namespace fracture::cli
