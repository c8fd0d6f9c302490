#include <gtest/gtest.h>

#include "fracture/train/trainer.h"

TEST(Freeze, StrategiesMapToStages) {
  using fracture::train::first_trainable_stage;
  EXPECT_EQ(first_trainable_stage("head", 9), 9);
  EXPECT_EQ(first_trainable_stage("full", 9), 0);
  EXPECT_EQ(first_trainable_stage("last:3", 9), 6);
  EXPECT_THROW(first_trainable_stage("last:10", 9), std::invalid_argument);
  EXPECT_THROW(first_trainable_stage("half", 9), std::invalid_argument);
}
