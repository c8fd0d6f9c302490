// Training options are typed, parsed from the flags' spellings, and checked
// before any work; the recipe a model file records keeps those spellings, so
// runs from before the options were typed still resume.
#include <gtest/gtest.h>

#include "fracture/train/options.h"

using namespace fracture::train;

namespace {

// The message of the std::invalid_argument `f` throws, or "" when none.
template <typename F>
std::string refusal(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Freeze, StrategiesMapToStages) {
  EXPECT_EQ(first_trainable_stage("head", 9), 9);
  EXPECT_EQ(first_trainable_stage("full", 9), 0);
  EXPECT_EQ(first_trainable_stage("last:3", 9), 6);
  EXPECT_EQ(first_trainable_stage("last:0", 9), 9);
  EXPECT_THROW(first_trainable_stage("last:10", 9), std::invalid_argument);
  EXPECT_THROW(first_trainable_stage("half", 9), std::invalid_argument);
}

TEST(Freeze, ParsesItsOwnSpellingAndNamesTheFlag) {
  for (const char* text : {"head", "full", "last:0", "last:3", "last:12"}) EXPECT_EQ(Freeze::parse(text).str(), text);
  EXPECT_EQ(TrainOptions().freeze.str(), "last:3");
  EXPECT_NE(refusal([] { Freeze::parse("last:"); }).find("--freeze last:: K in last:K"), std::string::npos);
  EXPECT_NE(refusal([] { Freeze::parse("last:-1"); }).find("whole number"), std::string::npos);
  EXPECT_NE(refusal([] { Freeze::parse("last:1000"); }).find("whole number"), std::string::npos);
  EXPECT_EQ(refusal([] { Freeze::parse("half"); }), "--freeze must be head, last:K or full, not 'half'");
  EXPECT_EQ(refusal([] { Freeze::parse("last:5").first_trainable(4); }), "--freeze last:5: the model has 4 stages");
}

TEST(Choices, RoundTripAndRefuseWithTheFlagAndTheChoices) {
  for (const char* t : {"adamw", "adam", "sgd"}) EXPECT_STREQ(to_string(parse_optimizer(t)), t);
  for (const char* t : {"cosine", "constant"}) EXPECT_STREQ(to_string(parse_schedule(t)), t);
  for (const char* t : {"loss", "sampler", "none"}) EXPECT_STREQ(to_string(parse_balance(t)), t);
  for (const char* t : {"ram", "disk", "off"}) EXPECT_STREQ(to_string(parse_feature_cache(t)), t);
  for (const char* t : {"geometric", "intensity", "both"}) EXPECT_STREQ(to_string(parse_augment_kind(t)), t);
  EXPECT_EQ(refusal([] { parse_optimizer("lamb"); }), "--optimizer must be adamw, adam or sgd, not 'lamb'");
  EXPECT_EQ(refusal([] { parse_schedule("step"); }), "--schedule must be cosine or constant, not 'step'");
  EXPECT_EQ(refusal([] { parse_balance("Loss"); }), "--balance must be loss, sampler or none, not 'Loss'");
  EXPECT_EQ(refusal([] { parse_feature_cache(""); }), "--cache must be ram, disk or off, not ''");
  EXPECT_EQ(refusal([] { parse_augment_kind("colour"); }),
            "--augment-kind must be geometric, intensity or both, not 'colour'");
}

TEST(Choices, AugmentKindSaysWhatTheImagesGet) {
  TrainOptions o;
  auto a = augment_options(o);
  EXPECT_TRUE(a.enabled && a.geometric);
  EXPECT_EQ(a.gamma + a.window + a.noise + a.blur, 0) << "the default is as before: geometric only";
  o.augment_kind = AugmentKind::Intensity;
  a = augment_options(o);
  EXPECT_FALSE(a.geometric);
  EXPECT_GT(a.gamma, 0);
  EXPECT_GT(a.noise, 0);
  o.augment_kind = AugmentKind::Both;
  EXPECT_TRUE(augment_options(o).geometric);
  o.augment = false;
  EXPECT_FALSE(augment_options(o).enabled);
}

TEST(Recipe, RecordsTheFlagsSpellings) {
  TrainOptions o;
  o.freeze = Freeze::parse("head");
  o.optimizer = Optimizer::Sgd;
  o.schedule = Schedule::Constant;
  o.balance = Balance::Sampler;
  o.cache = FeatureCache::Off;
  const auto r = recipe_json(o);
  EXPECT_EQ(r.at("freeze"), "head");
  EXPECT_EQ(r.at("optimizer"), "sgd");
  EXPECT_EQ(r.at("schedule"), "constant");
  EXPECT_EQ(r.at("balance"), "sampler");
  EXPECT_EQ(r.at("cached_features"), false);
  EXPECT_FALSE(r.contains("source_weights")) << "absent when unset, so older runs' recipes still match";
  EXPECT_FALSE(r.contains("augment_kind")) << "absent when geometric, for the same reason";
  o.augment_kind = AugmentKind::Intensity;
  EXPECT_EQ(recipe_json(o).at("augment_kind"), "intensity");
  EXPECT_FALSE(r.contains("standardise")) << "absent when off, for the same reason";
  o.standardise = true;
  EXPECT_EQ(recipe_json(o).at("standardise"), true);
}

TEST(Validate, RefusesOutOfRangeBeforeAnyWork) {
  TrainOptions o;
  EXPECT_NO_THROW(validate_options(o));
  o.epochs = 0;
  EXPECT_EQ(refusal([&] { validate_options(o); }), "--epochs 0: must be 1 or more");
  o = TrainOptions();
  o.freeze.last = -2;  // built by hand, not parsed
  EXPECT_NE(refusal([&] { validate_options(o); }).find("--freeze"), std::string::npos);
  o = TrainOptions();
  o.resume = o.overwrite = true;
  EXPECT_EQ(refusal([&] { validate_options(o); }), "--resume and --overwrite exclude each other");
}
