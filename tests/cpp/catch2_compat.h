// Catch2 v2 (Debian 12) and v3 (Debian 13) spell their headers differently.
#pragma once

#if defined(LAPLACE_ATTN_CATCH2_V3)
#include <catch2/catch_test_macros.hpp>
#else
#include <catch2/catch.hpp>
#endif
