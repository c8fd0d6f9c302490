#include "fracture/cli/config_file.h"

#include <set>
#include <sstream>

#include "fracture/util/atomic_file.h"

namespace fracture::cli {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r"), e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string unquote(const std::string& v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) {
    std::string out;
    for (size_t i = 1; i + 1 < v.size(); ++i) {
      if (v[i] == '\\' && i + 2 < v.size()) ++i;
      out += v[i];
    }
    return out;
  }
  return v;
}

std::string quote(const std::string& v) {
  std::string out = "\"";
  for (char c : v) out += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return out + "\"";
}

// The quoted strings of a one-line TOML array, ["a", "b"] (an option given several times).
std::vector<std::string> array_items(const std::string& v, const std::string& where) {
  std::vector<std::string> items;
  size_t i = 1;
  while (true) {
    i = v.find_first_not_of(" \t,", i);
    if (i == std::string::npos) throw std::runtime_error(where + ": unterminated array");
    if (v[i] == ']') return items;
    if (v[i] != '"') throw std::runtime_error(where + ": array items must be quoted strings");
    size_t j = i + 1;
    while (j < v.size() && v[j] != '"') j += v[j] == '\\' ? 2 : 1;
    if (j >= v.size()) throw std::runtime_error(where + ": unterminated string");
    items.push_back(unquote(v.substr(i, j - i + 1)));
    i = j + 1;
  }
}

bool is_flag(const CLI::Option* o) { return o->get_expected_min() == 0; }

// Flags about one invocation, not about the recipe: a run's config.toml does
// not hold them, and a config file given with --config does not set them.
const std::set<std::string> kOneShot = {"help", "config", "resume", "overwrite", "stop-after"};

}  // namespace

std::vector<std::string> expand_config(CLI::App& app, const std::vector<std::string>& args) {
  size_t cfg = args.size();
  std::string file;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) cfg = i, file = args[i + 1];
    else if (args[i].rfind("--config=", 0) == 0) cfg = i, file = args[i].substr(9);
  }
  if (file.empty()) return args;
  // The subcommand is the first argument that is one.
  CLI::App* sub = nullptr;
  for (const auto& a : args)
    if (!a.empty() && a[0] != '-') {
      try {
        sub = app.get_subcommand(a);
      } catch (const CLI::OptionNotFound&) {
      }
      if (sub) break;
    }
  if (!sub) throw std::runtime_error("--config goes with a subcommand, e.g. `fracture train --config FILE`");
  // Options given on the command line, by their long names, whatever form
  // they were given in (--out, --out=x, -o, -ox).
  std::set<std::string> given;
  for (const auto& a : args) {
    if (a.size() < 2 || a[0] != '-' || a == "--") continue;
    const std::string name = a[1] == '-' ? a.substr(0, a.find('=')) : a.substr(0, 2);
    const CLI::Option* opt = nullptr;
    try {
      opt = sub->get_option(name);
    } catch (const CLI::OptionNotFound&) {
      continue;
    }
    for (const auto& l : opt->get_lnames()) given.insert(l);
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i == cfg) {
      ++i;  // drop "--config FILE" (or the one "--config=FILE" word)
      if (args[cfg].rfind("--config=", 0) == 0) --i;
      continue;
    }
    out.push_back(args[i]);
  }
  std::istringstream in(util::read_file(file));
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) throw std::runtime_error(file + ":" + std::to_string(line_no) + ": expected key = value");
    const std::string key = trim(line.substr(0, eq)), value = unquote(trim(line.substr(eq + 1)));
    const CLI::Option* opt = nullptr;
    try {
      opt = sub->get_option("--" + key);
    } catch (const CLI::OptionNotFound&) {
      throw std::runtime_error(file + ":" + std::to_string(line_no) + ": '" + key + "' is not an option of `" +
                               sub->get_name() + "`");
    }
    if (given.count(key)) continue;  // the command line wins
    if (kOneShot.count(key)) continue;  // a config never resumes or stops a run by itself
    if (is_flag(opt)) {
      if (value == "true") out.push_back("--" + key);
    } else if (!value.empty() && value.front() == '[') {
      for (const auto& item : array_items(value, file + ":" + std::to_string(line_no))) {
        out.push_back("--" + key);
        out.push_back(item);
      }
    } else if (!value.empty()) {
      out.push_back("--" + key);
      out.push_back(value);
    }
  }
  return out;
}

std::string options_to_toml(const CLI::App& cmd) {
  std::ostringstream out;
  for (const CLI::Option* o : cmd.get_options()) {
    const std::string name = o->get_single_name();
    if (o->get_lnames().empty() || kOneShot.count(name)) continue;
    std::string value;
    if (is_flag(o)) {
      out << name << " = " << (o->count() > 0 ? "true" : "false") << "\n";
      continue;
    }
    if (o->results().size() > 1) {  // given several times
      out << name << " = [";
      for (size_t i = 0; i < o->results().size(); ++i) out << (i ? ", " : "") << quote(o->results()[i]);
      out << "]\n";
      continue;
    }
    if (o->count() > 0) value = o->results().back();
    else value = o->get_default_str();
    if (value.empty()) continue;
    const bool number = value.find_first_not_of("0123456789.eE+-") == std::string::npos;
    out << name << " = " << (number ? value : quote(value)) << "\n";
  }
  return out.str();
}

}  // namespace fracture::cli
