#include "fracture/cli/commands.h"

namespace fracture::cli {

void add_classify_command(CLI::App& app) { (void)app; }

}  // namespace fracture::cli
