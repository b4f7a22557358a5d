// The instruction sets this build compiles CPU kernels for (see CMakeLists.txt).
#pragma once

// Calls X(isa) for each: the name of the namespace that isa's kernels live in.
#if defined(LAPLACE_ATTN_HAVE_AVX512)
#define LAPLACE_ATTN_FOR_EACH_ISA(X) X(baseline) X(avx2) X(avx512) X(avx512_bf16)
#else
#define LAPLACE_ATTN_FOR_EACH_ISA(X) X(baseline)
#endif
