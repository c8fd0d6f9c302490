#pragma once
// The interface every image classifier here implements. A network is a chain
// of stages (stem, the architecture's stages, the last feature conv) followed
// by a head (pool, dropout, linear). Naming the stages lets transfer learning
// freeze the first ones and cache their output, and lets Grad-CAM hook the last.
#include <torch/torch.h>

#include <string>

namespace fracture::models {

class ClassifierImpl : public torch::nn::Module {
 public:
  // Runs stages [begin, end) on x.
  torch::Tensor forward_stages(torch::Tensor x, int begin, int end) {
    for (int i = begin; i < end; ++i) x = forward_stage(i, x);
    return x;
  }
  // Feature map after the last stage: [N, num_features(), h, w].
  torch::Tensor forward_features(torch::Tensor x) { return forward_stages(x, 0, num_stages()); }
  // Logits: [N, num_classes].
  torch::Tensor forward(torch::Tensor x) { return forward_head(forward_features(x)); }
  // Features -> logits: the architecture's own head (average pooling, then
  // the classifier), or with cell pooling a soft maximum over the cells'
  // log-odds (see set_cell_pooling).
  torch::Tensor forward_head(torch::Tensor features);
  // The binary fracture log-odds of every cell of the feature map: [N, h, w].
  torch::Tensor cell_log_odds(torch::Tensor features);
  // Cell log-odds [N, h, w] -> logits [N, 2] by cell pooling.
  torch::Tensor pool_log_odds(const torch::Tensor& cell_log_odds) const;

  // Multiple-instance pooling (binary models): the image's log-odds becomes
  // log(mean(exp(r * cell log-odds))) / r, near the mean for small r and the
  // strongest cell for large r; an image is fractured if some place is. 0:
  // the architecture's average pooling. Saved with the model (ModelInfo).
  void set_cell_pooling(double sharpness);
  double cell_pooling() const { return cell_pooling_; }

  virtual int num_stages() const = 0;
  virtual torch::Tensor forward_stage(int index, torch::Tensor x) = 0;
  // The modules making up stage `index` (to freeze them, or hook them).
  virtual std::vector<std::shared_ptr<torch::nn::Module>> stage_modules(int index) = 0;
  // Average pooling and the classifier.
  virtual torch::Tensor forward_average_head(torch::Tensor features) = 0;
  // The classifier applied to every cell: [N, num_classes, h, w]. Throws for
  // a head that is not one linear layer.
  virtual torch::Tensor cell_logits(torch::Tensor features) = 0;
  virtual int64_t num_features() const = 0;
  virtual int64_t num_classes() const = 0;
  // Replaces the final linear layer by a freshly initialised one.
  virtual void reset_classifier(int64_t num_classes) = 0;
  // Parameter-name prefix of that final layer ("classifier." or "fc.").
  virtual std::string classifier_prefix() const = 0;

 private:
  double cell_pooling_ = 0;
};

using Classifier = std::shared_ptr<ClassifierImpl>;

}  // namespace fracture::models
