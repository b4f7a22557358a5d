#include "cli/pickle_scan.h"

#include <cstdint>
#include <cstdio>
#include <cstring>

namespace laplace_attn::cli {
namespace {

// How an opcode's argument is laid out (pickle protocols 0 to 5).
enum class Argument { kNone, kFixed, kLength, kFrame, kMemoId, kLine, kTwoLines, kUnknown };

struct Layout {
  Argument kind;
  size_t bytes;  // the little-endian operand after the opcode (0 for none)
};

Layout layout_of(unsigned char op) {
  switch (op) {
    case 0x80:  // PROTO
    case 'K':   // BININT1
    case 'h':   // BINGET
    case 'q':   // BINPUT
    case 0x82:  // EXT1
      return {Argument::kFixed, 1};
    case 'M':   // BININT2
    case 0x83:  // EXT2
      return {Argument::kFixed, 2};
    case 'J':   // BININT
    case 'j':   // LONG_BINGET
    case 0x84:  // EXT4
      return {Argument::kFixed, 4};
    case 'r':  // LONG_BINPUT: the unpickler sizes its memo table by the id
      return {Argument::kMemoId, 4};
    case 'G':  // BINFLOAT
      return {Argument::kFixed, 8};
    case 0x95:  // FRAME: the length of the frame that follows, not skipped
      return {Argument::kFrame, 8};
    case 'U':   // SHORT_BINSTRING
    case 'C':   // SHORT_BINBYTES
    case 0x8c:  // SHORT_BINUNICODE
    case 0x8a:  // LONG1
      return {Argument::kLength, 1};
    case 'T':   // BINSTRING
    case 'X':   // BINUNICODE
    case 'B':   // BINBYTES
    case 0x8b:  // LONG4
      return {Argument::kLength, 4};
    case 0x8d:  // BINUNICODE8
    case 0x8e:  // BINBYTES8
    case 0x96:  // BYTEARRAY8
      return {Argument::kLength, 8};
    case 'F':
    case 'I':
    case 'L':
    case 'P':
    case 'S':
    case 'V':
    case 'g':
    case 'p':
      return {Argument::kLine, 0};
    case 'c':  // GLOBAL module\nname\n
    case 'i':  // INST
      return {Argument::kTwoLines, 0};
    case '(':
    case '.':
    case '0':
    case '1':
    case '2':
    case 'N':
    case 'Q':
    case 'R':
    case 'a':
    case 'b':
    case 'd':
    case '}':
    case 'e':
    case 'l':
    case ']':
    case 'o':
    case 's':
    case 't':
    case ')':
    case 'u':
    case 0x81:
    case 0x85:
    case 0x86:
    case 0x87:
    case 0x88:
    case 0x89:
    case 0x8f:
    case 0x90:
    case 0x91:
    case 0x92:
    case 0x93:
    case 0x94:
    case 0x97:
    case 0x98:
      return {Argument::kNone, 0};
    default:
      return {Argument::kUnknown, 0};
  }
}

uint64_t little_endian(const char* p, size_t bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < bytes; ++i)
    value |= static_cast<uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return value;
}

}  // namespace

std::string find_oversized_length(const char* data, size_t size) {
  size_t at = 0;
  while (at < size) {
    const unsigned char op = static_cast<unsigned char>(data[at]);
    const size_t opcode_at = at++;
    const size_t left = size - at;
    const Layout layout = layout_of(op);
    char name[8];
    std::snprintf(name, sizeof name, "0x%02x", op);
    const std::string where =
        "opcode " + std::string(name) + " at byte " + std::to_string(opcode_at);
    // The fixed-size operand, when the opcode has one: a value, a memo id or a length.
    uint64_t operand = 0;
    if (layout.bytes > 0) {
      if (layout.bytes > left)
        return where + " needs " + std::to_string(layout.bytes) + " bytes, the pickle has " +
               std::to_string(left) + " left";
      operand = little_endian(data + at, layout.bytes);
      at += layout.bytes;
    }
    switch (layout.kind) {
      case Argument::kUnknown:
        return "";
      case Argument::kNone:
        if (op == '.')  // STOP
          return "";
        break;
      case Argument::kFixed:
        break;
      case Argument::kMemoId:
        // Every memoised value took at least one opcode, so a real id is below
        // the pickle's size.
        if (operand > size)
          return where + " stores memo entry " + std::to_string(operand) + " in a pickle of " +
                 std::to_string(size) + " bytes";
        break;
      case Argument::kFrame:
      case Argument::kLength:
        if (operand > size - at)
          return where + " claims " + std::to_string(operand) + " bytes, the pickle has " +
                 std::to_string(size - at) + " left";
        if (layout.kind == Argument::kLength)  // a frame's bytes are the opcodes that follow
          at += static_cast<size_t>(operand);
        break;
      case Argument::kLine:
        if (op == 'p') {  // PUT id\n: the memo id in decimal, bounded as above
          uint64_t id = 0;
          for (size_t i = at; i < size && data[i] >= '0' && data[i] <= '9' && id <= size; ++i)
            id = id * 10 + static_cast<uint64_t>(data[i] - '0');
          if (id > size)
            return where + " stores a memo entry past the pickle's " + std::to_string(size) +
                   " bytes";
        }
        [[fallthrough]];
      case Argument::kTwoLines:
        for (int line = layout.kind == Argument::kLine ? 1 : 2; line > 0; --line) {
          const void* end = std::memchr(data + at, '\n', size - at);
          if (end == nullptr)
            return where + " has no end of line";
          at = static_cast<const char*>(end) - data + 1;
        }
        break;
    }
  }
  return "";
}

}  // namespace laplace_attn::cli
