// A pass over a pickle's opcodes before PyTorch's unpickler sees them. The
// unpickler allocates what a length field claims before it reads the bytes, so
// a 1 KiB file claiming a 4 GiB string made laplace-attn-infer take 4 GiB of
// memory, and a memo id of 2e9 made it size its memo table to 30 GB (both found
// by tests/fuzz). Here every length must fit in what is left and every memo id
// below the pickle's size.
#pragma once

#include <cstddef>
#include <string>

namespace laplace_attn::cli {

// "" if every length-prefixed argument and fixed-size operand of the pickle in
// data[0, size) fits in the bytes that follow it; otherwise what does not.
// Opcodes it does not know end the pass (the unpickler then decides).
std::string find_oversized_length(const char* data, size_t size);

}  // namespace laplace_attn::cli
