#pragma once
// Checks a JSON value against a schema of the server's OpenAPI description
// (docs/openapi.json), for the subset of OpenAPI 3.0 schemas it uses: $ref,
// type, nullable, required, properties, additionalProperties, items, oneOf,
// enum, minimum, maximum. Returns the problems found, each with its JSON path.
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace fracture::testing {

class OpenApiCheck {
 public:
  explicit OpenApiCheck(nlohmann::json document) : doc_(std::move(document)) {}

  // `schema_name`: a name under components/schemas.
  std::vector<std::string> problems(const nlohmann::json& value, const std::string& schema_name) const {
    std::vector<std::string> out;
    check(value, doc_["components"]["schemas"][schema_name], "$", out);
    return out;
  }

 private:
  const nlohmann::json& resolve(const nlohmann::json& schema) const {
    if (!schema.contains("$ref")) return schema;
    const std::string ref = schema["$ref"];  // "#/components/schemas/Name"
    return doc_.at(nlohmann::json::json_pointer(ref.substr(1)));
  }

  static bool has_type(const nlohmann::json& v, const std::string& type) {
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    if (type == "string") return v.is_string();
    if (type == "integer") return v.is_number_integer();
    if (type == "number") return v.is_number();
    if (type == "boolean") return v.is_boolean();
    return false;
  }

  void check(const nlohmann::json& v, const nlohmann::json& raw, const std::string& at,
             std::vector<std::string>& out) const {
    const auto& s = resolve(raw);
    if (v.is_null() && s.value("nullable", false)) return;
    if (s.contains("oneOf")) {
      int matches = 0;
      for (const auto& option : s["oneOf"]) {
        std::vector<std::string> sub;
        check(v, option, at, sub);
        matches += sub.empty();
      }
      if (matches != 1) out.push_back(at + ": matches " + std::to_string(matches) + " of oneOf's schemas, not 1");
      return;
    }
    if (s.contains("type") && !has_type(v, s["type"])) {
      out.push_back(at + ": not of type " + s["type"].get<std::string>() + ": " + v.dump().substr(0, 80));
      return;
    }
    if (s.contains("enum") && std::find(s["enum"].begin(), s["enum"].end(), v) == s["enum"].end())
      out.push_back(at + ": " + v.dump() + " is not one of " + s["enum"].dump());
    if (v.is_number() && s.contains("minimum") && v.get<double>() < s["minimum"].get<double>())
      out.push_back(at + ": below the minimum");
    if (v.is_number() && s.contains("maximum") && v.get<double>() > s["maximum"].get<double>())
      out.push_back(at + ": above the maximum");
    if (v.is_array() && s.contains("items"))
      for (size_t i = 0; i < v.size(); ++i) check(v[i], s["items"], at + "[" + std::to_string(i) + "]", out);
    if (!v.is_object()) return;
    for (const auto& name : s.value("required", nlohmann::json::array()))
      if (!v.contains(name.get<std::string>())) out.push_back(at + ": lacks required '" + name.get<std::string>() + "'");
    const auto properties = s.value("properties", nlohmann::json::object());
    for (const auto& [key, item] : v.items()) {
      if (properties.contains(key)) {
        check(item, properties[key], at + "." + key, out);
      } else if (s.contains("additionalProperties")) {
        const auto& extra = s["additionalProperties"];
        if (extra.is_boolean() && !extra.get<bool>()) out.push_back(at + ": '" + key + "' is not in the schema");
        else if (extra.is_object()) check(item, extra, at + "." + key, out);
      }
    }
  }

  nlohmann::json doc_;
};

}  // namespace fracture::testing
