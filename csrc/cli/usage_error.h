// The one kind of failure laplace-attn-infer reports: a message the user can act
// on, printed as one line, exit status 2.
#pragma once

#include <stdexcept>

namespace laplace_attn::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace laplace_attn::cli
