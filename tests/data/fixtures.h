#pragma once
// Generated datasets in the layouts the readers support.
#include <fstream>

#include "helpers.h"

namespace fracture::testing {

// FracAtlas layout: dataset.csv (CRLF) + images/Fractured|Non_fractured.
// `n` images, every 5th fractured; regions cycle hand/leg/hip/shoulder; image 3
// is filed under Fractured/ while the CSV says fractured=0 (as IMG0003298).
inline void make_fracatlas(const TempDir& dir, int n, int size = 96) {
  std::ofstream csv(dir / "dataset.csv", std::ios::binary);
  csv << "image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique\r\n";
  const char* regions[] = {"1,0,0,0,0", "0,1,0,0,0", "0,0,1,0,0", "0,0,0,1,0"};
  for (int i = 0; i < n; ++i) {
    const bool frac = i % 5 == 0 || i == 3;
    char id[32];
    std::snprintf(id, sizeof id, "IMG%07d.jpg", i);
    write_image(dir / (std::string("images/") + (frac ? "Fractured/" : "Non_fractured/") + id),
                synthetic_xray(size, size + 16, static_cast<unsigned>(i), frac));
    csv << id << "," << regions[i % 4] << "," << (i % 7 == 0) << ",0," << (frac && i != 3) << "," << frac << ",1,0,0\r\n";
  }
}

}  // namespace fracture::testing
