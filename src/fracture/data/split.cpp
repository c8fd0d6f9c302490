#include "fracture/data/split.h"

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <numeric>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "fracture/data/image_io.h"
#include "fracture/util/atomic_file.h"
#include "fracture/util/hash.h"

namespace fracture::data {
namespace {

constexpr int kThumb = 32;

struct UnionFind {
  std::vector<size_t> parent;
  explicit UnionFind(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  size_t find(size_t x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  bool unite(size_t a, size_t b) {
    a = find(a), b = find(b);
    if (a == b) return false;
    parent[std::max(a, b)] = std::min(a, b);
    return true;
  }
};

struct Fingerprint {
  uint64_t hash = 0;
  bool ok = false;
  bool truncated = false;
  float aspect = 0;
  std::vector<float> thumb;  // zero-mean, unit-norm
  std::string error;
};

Fingerprint fingerprint(const std::string& path, bool thumbs) {
  Fingerprint f;
  try {
    const std::string bytes = util::read_file(path);
    f.hash = util::fnv1a64(bytes);
    if (thumbs) {
      // A JPEG may be decoded at a reduced scale (libjpeg's scaled inverse
      // DCT: fast on the 2,000 px scans), but only to 8 or more decoded
      // pixels per thumbnail pixel. At 1/4 scale a 373 x 454 radiograph
      // came out at 94 x 114 from the reduced 2 x 2 transform, which is no
      // average: FracAtlas's IMG0002848 and its copy IMG0004206 (2 px lower,
      // encoded apart) then correlated at 0.97-0.975, under the bar, and
      // landed in val and train (issue 39); from full-scale pixels, 0.996.
      DecodedImage img = decode_image_bytes(bytes, path, DecodeOptions{false, 8 * kThumb});
      f.truncated = img.truncated;
      f.aspect = static_cast<float>(img.pixels.cols) / static_cast<float>(img.pixels.rows);
      cv::Mat small, fl;
      cv::resize(img.pixels, small, {kThumb, kThumb}, 0, 0, cv::INTER_AREA);
      small.convertTo(fl, CV_32F);
      cv::Scalar mean, sd;
      cv::meanStdDev(fl, mean, sd);
      fl = (fl - mean[0]) / (sd[0] * kThumb + 1e-6);
      f.thumb.assign(fl.ptr<float>(), fl.ptr<float>() + kThumb * kThumb);
    }
    f.ok = true;
  } catch (const std::exception& e) {
    f.error = e.what();
  }
  return f;
}

// Shuffles a stratum's groups (seeded by the stratum's key) and gives each to
// the split furthest below its share of the stratum.
void assign_stratum(Dataset& d, const std::string& key, std::vector<std::string>& groups,
                    std::map<std::string, std::vector<size_t>>& members, const SplitOptions& o) {
  const char* names[3] = {"train", "val", "test"};
  const double frac[3] = {1.0 - o.val_fraction - o.test_fraction, o.val_fraction, o.test_fraction};
  std::mt19937_64 rng(util::mix_seed(o.seed, util::fnv1a64(key)));
  std::shuffle(groups.begin(), groups.end(), rng);
  // Larger groups first so that the greedy fill can still balance them out.
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const auto& a, const auto& b) { return members[a].size() > members[b].size(); });
  size_t total = 0;
  for (const auto& g : groups) total += members[g].size();
  double filled[3] = {0, 0, 0};
  for (const auto& g : groups) {
    int best = 0;
    double best_gap = -1e18;
    for (int k = 0; k < 3; ++k) {
      if (frac[k] <= 0) continue;
      const double gap = (frac[k] * static_cast<double>(total) - filled[k]) / frac[k];
      if (gap > best_gap) best_gap = gap, best = k;
    }
    filled[best] += static_cast<double>(members[g].size());
    for (size_t i : members[g]) d.samples[i].split = names[best];
  }
}

}  // namespace

DuplicateReport group_duplicates(Dataset& d, const SplitOptions& o) {
  DuplicateReport rep;
  const size_t n = d.samples.size();
  std::vector<Fingerprint> fp(n);
  std::atomic<size_t> next{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, o.threads); ++t)
    pool.emplace_back([&] {
      for (size_t i; (i = next++) < n;) fp[i] = fingerprint(d.samples[i].path, o.near_duplicates);
    });
  for (auto& t : pool) t.join();

  UnionFind uf(n);
  // Samples that already share a group (e.g. from a manifest) stay together.
  std::map<std::string, size_t> first_of_group;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = first_of_group.emplace(d.samples[i].group, i);
    if (!fresh && !d.samples[i].group.empty()) uf.unite(it->second, i);
  }
  std::map<uint64_t, size_t> by_hash;
  for (size_t i = 0; i < n; ++i) {
    if (!fp[i].ok) {
      ++rep.unreadable;
      rep.messages.push_back(fp[i].error + " (kept in the split as its own group)");
      continue;
    }
    if (fp[i].truncated) rep.truncated.push_back(d.samples[i].path);
    auto [it, fresh] = by_hash.emplace(fp[i].hash, i);
    if (!fresh) {
      ++rep.exact_pairs;
      if (uf.unite(it->second, i)) ++rep.groups_merged;
    }
  }
  if (o.near_duplicates) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < n; ++i)
      if (fp[i].ok) idx.push_back(i);
    const int64_t m = static_cast<int64_t>(idx.size());
    torch::Tensor t = torch::empty({m, kThumb, kThumb});
    for (int64_t r = 0; r < m; ++r) std::copy(fp[idx[r]].thumb.begin(), fp[idx[r]].thumb.end(), t[r].data_ptr<float>());
    // The thumbnails as they would be if each image were mirrored or turned
    // by quarter turns (the 8 symmetries of a square; augmented data sets hold
    // such copies). A turn by 90 or 270 degrees swaps width and height.
    std::vector<torch::Tensor> turned{t};
    std::vector<bool> swaps{false};
    if (o.mirrored_and_turned) {
      const auto tt = t.transpose(1, 2);
      turned = {t, t.flip({2}), t.flip({1}), t.flip({1, 2}), tt, tt.flip({2}), tt.flip({1}), tt.flip({1, 2})};
      swaps = {false, false, false, false, true, true, true, true};
    }
    for (auto& v : turned) v = v.reshape({m, kThumb * kThumb}).contiguous();
    const torch::Tensor rows = turned[0];
    // All-pairs correlation as matrix products, in row blocks to bound memory.
    const int64_t block = 512;
    for (int64_t r0 = 0; r0 < m; r0 += block) {
      const int64_t r1 = std::min(m, r0 + block);
      std::vector<torch::Tensor> corr;
      for (const auto& v : turned) corr.push_back(torch::mm(rows.slice(0, r0, r1), v.t()));
      for (int64_t a = r0; a < r1; ++a)
        for (int64_t b = a + 1; b < m; ++b) {
          const size_t i = idx[a], j = idx[b];
          int match = -1;  // the first symmetry under which j looks like i
          for (size_t k = 0; k < corr.size() && match < 0; ++k) {
            if (corr[k].data_ptr<float>()[(a - r0) * m + b] < o.near_duplicate_threshold) continue;
            const float aspect_j = swaps[k] ? 1.0f / fp[j].aspect : fp[j].aspect;
            if (std::abs(fp[i].aspect - aspect_j) <= 0.02f * fp[i].aspect) match = static_cast<int>(k);
          }
          if (match < 0 || fp[i].hash == fp[j].hash) continue;  // identical bytes: counted as exact already
          ++rep.near_pairs;
          rep.turned_pairs += match > 0;
          if (uf.unite(i, j)) ++rep.groups_merged;
        }
    }
  }
  // Name each group after its first member, so groups are stable and readable.
  for (size_t i = 0; i < n; ++i) {
    const size_t root = uf.find(i);
    std::string name = d.samples[root].group.empty() ? d.samples[root].path : d.samples[root].group;
    d.samples[i].group = name;
  }
  return rep;
}

DuplicateReport assign_splits(Dataset& d, const SplitOptions& o) {
  if (o.keep_existing) {
    bool all = true;
    for (const auto& s : d.samples) all = all && !s.split.empty();
    if (all) return {};
  }
  DuplicateReport rep = group_duplicates(d, o);
  // Groups, each with its stratum (label/region of its first member).
  std::map<std::string, std::vector<size_t>> members;
  std::vector<std::string> order;  // first-seen order: deterministic
  for (size_t i = 0; i < d.samples.size(); ++i) {
    auto& v = members[d.samples[i].group];
    if (v.empty()) order.push_back(d.samples[i].group);
    v.push_back(i);
  }
  // Each source is split on its own, stratified by label and region: a
  // source's split is the same whichever sources it is combined with. A group
  // that spans sources (the same radiograph in two data sets) goes with its
  // first member's source.
  std::map<std::string, std::map<std::string, std::vector<std::string>>> strata;  // source -> stratum -> groups
  for (const auto& g : order) {
    const Sample& s = d.samples[members[g].front()];
    strata[s.source][std::to_string(s.label) + "/" + s.region].push_back(g);
    rep.cross_source_groups += std::any_of(members[g].begin(), members[g].end(),
                                           [&](size_t i) { return d.samples[i].source != s.source; });
    if (std::any_of(members[g].begin(), members[g].end(), [&](size_t i) { return d.samples[i].label != s.label; }))
      rep.mixed_label_groups.push_back(s.path);
  }
  for (auto& [source, by_stratum] : strata)
    for (auto& [key, groups] : by_stratum) assign_stratum(d, key, groups, members, o);
  return rep;
}

SplitCounts count_splits(const Dataset& d) {
  SplitCounts c;
  for (const auto& s : d.samples) c[s.split.empty() ? "-" : s.split][d.class_names.at(s.label)][s.region.empty() ? "-" : s.region]++;
  return c;
}

std::string format_split_counts(const Dataset& d) {
  const auto sources = d.sources();
  if (sources.size() > 1) {  // a table per source
    std::string out;
    for (const auto& source : sources) {
      Dataset part = d;
      part.samples.clear();
      for (const auto& s : d.samples)
        if (s.source == source) part.samples.push_back(s);
      out += "source " + source + "\n" + format_split_counts(part) + "\n";
    }
    return out;
  }
  const SplitCounts c = count_splits(d);
  std::set<std::string> regions;
  for (const auto& [_, byc] : c)
    for (const auto& [__, byr] : byc)
      for (const auto& [r, ___] : byr) regions.insert(r);
  std::ostringstream out;
  out << fmt::format("{:<6} {:<15} {:>6}", "split", "class", "total");
  const bool show_regions = !(regions.size() == 1 && *regions.begin() == "-");
  if (show_regions)
    for (const auto& r : regions) out << fmt::format(" {:>8}", r);
  out << "\n";
  for (const char* split : {"train", "val", "test", "-"}) {
    auto it = c.find(split);
    if (it == c.end()) continue;
    int split_total = 0;
    for (const auto& cls : d.class_names) {
      auto jt = it->second.find(cls);
      int total = 0;
      if (jt != it->second.end())
        for (const auto& [_, n] : jt->second) total += n;
      split_total += total;
      out << fmt::format("{:<6} {:<15} {:>6}", split, cls, total);
      if (show_regions)
        for (const auto& r : regions) {
          int n = 0;
          if (jt != it->second.end() && jt->second.count(r)) n = jt->second.at(r);
          out << fmt::format(" {:>8}", n);
        }
      out << "\n";
    }
    out << fmt::format("{:<6} {:<15} {:>6}\n", split, "all", split_total);
  }
  return out.str();
}

}  // namespace fracture::data
