#include "fracture/eval/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

#include <fmt/format.h>

namespace fracture::eval {
namespace {

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return o;
}

// "Nice" tick step for a range: 1, 2 or 5 times a power of ten.
double tick_step(double range) {
  const double raw = range / 5;
  const double p = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

}  // namespace

std::string render_svg(const Plot& plot, int width, int height) {
  double x0 = plot.x_min, x1 = plot.x_max, y0 = plot.y_min, y1 = plot.y_max;
  if (plot.auto_range) {
    x0 = y0 = std::numeric_limits<double>::infinity();
    x1 = y1 = -std::numeric_limits<double>::infinity();
    for (const auto& s : plot.series)
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
          x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]), y0 = std::min(y0, s.y[i]), y1 = std::max(y1, s.y[i]);
    if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x1 = x0 + 1;
    const double range = y1 - y0 + 1e-9;
    y0 -= range * 0.08, y1 += range * 0.3;  // headroom for the legend
  }
  const double left = 60, right = 20, top = 34, bottom = 48;
  const double pw = width - left - right, ph = height - top - bottom;
  auto sx = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto sy = [&](double y) { return top + (1 - (y - y0) / (y1 - y0)) * ph; };

  std::ostringstream o;
  o << fmt::format(R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="12">)",
                   width, height, width, height)
    << "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << fmt::format(R"(<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>)", width / 2,
                   escape(plot.title))
    << "\n";
  // Grid and ticks.
  const double xs = tick_step(x1 - x0), ys = tick_step(y1 - y0);
  for (double t = std::ceil(x0 / xs) * xs; t <= x1 + 1e-9; t += xs)
    o << fmt::format(R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#e5e5e5"/><text x="{:.1f}" y="{:.1f}" text-anchor="middle">{}</text>)",
                     sx(t), top, sx(t), top + ph, sx(t), top + ph + 16, fmt::format("{:g}", std::round(t / xs) * xs))
      << "\n";
  for (double t = std::ceil(y0 / ys) * ys; t <= y1 + 1e-9; t += ys)
    o << fmt::format(R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="#e5e5e5"/><text x="{:.1f}" y="{:.1f}" text-anchor="end">{}</text>)",
                     left, sy(t), left + pw, sy(t), left - 6, sy(t) + 4, fmt::format("{:g}", std::round(t / ys) * ys))
      << "\n";
  o << fmt::format(R"(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#333"/>)", left, top, pw, ph) << "\n";
  o << fmt::format(R"(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)", left + pw / 2, height - 10, escape(plot.x_label))
    << "\n";
  o << fmt::format(R"svg(<text transform="translate(16,{:.1f}) rotate(-90)" text-anchor="middle">{}</text>)svg", top + ph / 2,
                   escape(plot.y_label))
    << "\n";
  // Series.
  int legend = 0;
  std::ostringstream legend_svg;  // drawn last, on a white box, so curves never hide it
  size_t longest = 0;
  for (const auto& s : plot.series) longest = std::max(longest, s.name.size());
  for (const auto& s : plot.series) {
    std::string pts;
    for (size_t i = 0; i < s.x.size(); ++i)
      if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) pts += fmt::format("{:.1f},{:.1f} ", sx(s.x[i]), sy(s.y[i]));
    o << fmt::format(R"(<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>)", pts, s.colour,
                     s.dashed ? R"( stroke-dasharray="5,4")" : "")
      << "\n";
    if (s.markers)
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]))
          o << fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)", sx(s.x[i]), sy(s.y[i]), s.colour);
    if (!s.name.empty()) {
      const double ly = top + 14 + 16 * legend++;
      legend_svg << fmt::format(R"(<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-width="2"{}/><text x="{:.1f}" y="{:.1f}">{}</text>)",
                       left + 10, ly - 4, left + 30, ly - 4, s.colour, s.dashed ? R"( stroke-dasharray="5,4")" : "",
                       left + 36, ly, escape(s.name))
        << "\n";
    }
  }
  if (legend > 0)
    o << fmt::format(R"(<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{}" fill="white" fill-opacity="0.85" stroke="#ccc"/>)",
                     left + 4, top + 2, 40 + 7.0 * static_cast<double>(longest), 16 * legend + 4)
      << "\n"
      << legend_svg.str();
  for (size_t i = 0; i < plot.notes.size(); ++i)
    o << fmt::format(R"(<text x="{:.1f}" y="{:.1f}" text-anchor="end">{}</text>)", left + pw - 8,
                     top + ph - 10 - 16.0 * static_cast<double>(plot.notes.size() - 1 - i), escape(plot.notes[i]))
      << "\n";
  o << "</svg>\n";
  return o.str();
}

std::string render_confusion_svg(const std::string& title, const std::vector<std::string>& names,
                                 const std::vector<std::vector<int64_t>>& counts) {
  const int k = static_cast<int>(names.size());
  const int cell = k > 6 ? 44 : 64, left = 150, top = 44, bottom = 130;
  const int width = left + k * cell + 20, height = top + k * cell + bottom;
  std::ostringstream o;
  o << fmt::format(R"svg(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="11">)svg",
                   width, height, width, height)
    << fmt::format(R"svg(<rect width="{}" height="{}" fill="white"/>)svg", width, height)
    << fmt::format(R"svg(<text x="{}" y="20" font-size="14" text-anchor="middle">{}</text>)svg", width / 2, escape(title));
  for (int r = 0; r < k; ++r) {
    int64_t row_total = 0;
    for (int c = 0; c < k; ++c) row_total += counts[r][c];
    const double y = top + r * cell;
    o << fmt::format(R"svg(<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>)svg", left - 6,
                     y + cell / 2.0, escape(names[r]));
    for (int c = 0; c < k; ++c) {
      const double share = row_total ? static_cast<double>(counts[r][c]) / static_cast<double>(row_total) : 0;
      const double x = left + c * cell;
      // White to dark blue; text turns white on the darker half.
      const int shade = static_cast<int>(std::lround(255 * (1 - 0.85 * share)));
      o << fmt::format(R"svg(<rect x="{}" y="{}" width="{}" height="{}" fill="rgb({},{},255)" stroke="#cccccc"/>)svg", x, y,
                       cell, cell, shade, shade)
        << fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle" fill="{}">{:.2f}</text>)svg", x + cell / 2.0,
                       y + cell / 2.0 - 2, share > 0.5 ? "white" : "black", share)
        << fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle" font-size="9" fill="{}">{}</text>)svg", x + cell / 2.0,
                       y + cell / 2.0 + 11, share > 0.5 ? "white" : "#444444", counts[r][c]);
    }
  }
  for (int c = 0; c < k; ++c) {
    const double x = left + c * cell + cell / 2.0, y = top + k * cell + 8;
    o << fmt::format(R"svg(<text x="{}" y="{}" text-anchor="end" transform="rotate(-50 {} {})">{}</text>)svg", x, y, x, y,
                     escape(names[c]));
  }
  o << fmt::format(R"svg(<text x="{}" y="{}" text-anchor="middle">predicted</text>)svg", left + k * cell / 2.0, height - 8)
    << fmt::format(R"svg(<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">true</text>)svg",
                   top + k * cell / 2.0, top + k * cell / 2.0)
    << "</svg>\n";
  return o.str();
}

}  // namespace fracture::eval
