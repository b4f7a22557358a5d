// Marks the out-of-line functions the op drivers call (input checks and
// preparation) as visible outside liblaplace_attn.so: the library hides its
// symbols, and the tests' CUDA launch emulation library runs the same drivers.
// Not part of the public C++ API (csrc/include/laplace_attn/ops.h is).
#pragma once

#define LAPLACE_ATTN_INTERNAL_API __attribute__((visibility("default")))
