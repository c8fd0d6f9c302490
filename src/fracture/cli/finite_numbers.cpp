#include <cmath>
#include <string>

#include "fracture/cli/commands.h"

namespace fracture::cli {

void require_finite_numbers(CLI::App& app) {
  const CLI::Validator finite(
      [](std::string& text) -> std::string {
        try {
          size_t used = 0;
          if (!std::isfinite(std::stod(text, &used))) return "'" + text + "' is not a finite number";
        } catch (const std::exception&) {
          // not a number at all: CLI11's own conversion says so
        }
        return "";
      },
      "");  // no name: the help text stays as it was
  for (auto* option : app.get_options())
    if (option->get_type_name().rfind("FLOAT", 0) == 0) option->check(finite);  // "FLOAT", or with its checks: "FLOAT:..."
  for (auto* sub : app.get_subcommands([](CLI::App*) { return true; })) require_finite_numbers(*sub);
}

}  // namespace fracture::cli
