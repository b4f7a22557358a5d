"""Builds laplace_attn through its CMake project (CMakeLists.txt).

    pip install --no-build-isolation -e .     # torch must already be installed

Environment: LAPLACE_ATTN_BUILD_DIR (CMake build folder, default under build/),
LAPLACE_ATTN_BUILD_TESTS=1 (also build the Catch2 tests), LAPLACE_ATTN_CMAKE_ARGS
(more CMake arguments, separated by spaces), MAX_JOBS.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).parent.resolve()


def _replace(src: Path, dst: Path) -> None:
    """Copies src over dst through a new file, so a process that has the old
    library loaded keeps a valid mapping instead of crashing."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copy2(src, tmp)
    os.replace(tmp, dst)


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Runs CMake; _C, the op library it links (liblaplace_attn.so) and the
    inference program (bin/laplace-attn-infer) land together in the package."""

    # Built files that travel with _C: (name in the build folder, path in the package).
    COMPANIONS = (("liblaplace_attn.so", "liblaplace_attn.so"),
                  ("laplace-attn-infer", "bin/laplace-attn-infer"))

    def build_extension(self, ext):
        import pybind11
        import torch.utils

        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(os.environ.get("LAPLACE_ATTN_BUILD_DIR", ROOT / "build" / "cmake")).resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        tests = os.environ.get("LAPLACE_ATTN_BUILD_TESTS", "0") == "1"
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={build_dir}",
            f"-DLAPLACE_ATTN_BUILD_TESTS={'ON' if tests else 'OFF'}",
            *os.environ.get("LAPLACE_ATTN_CMAKE_ARGS", "").split(),
        ]
        subprocess.check_call(configure)
        jobs = os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))
        subprocess.check_call(["cmake", "--build", str(build_dir), "-j", jobs])
        for built, packaged in self.COMPANIONS:
            (out_dir / packaged).parent.mkdir(parents=True, exist_ok=True)
            _replace(build_dir / built, out_dir / packaged)
        _replace(build_dir / Path(self.get_ext_filename(ext.name)).name,
                 Path(self.get_ext_fullpath(ext.name)))

    def copy_extensions_to_source(self):
        # Editable installs copy each extension into the source tree; its
        # companions must follow _C there.
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            package = ext.name.rpartition(".")[0]
            package_dir = Path(build_py.get_package_dir(package))
            for _, packaged in self.COMPANIONS:
                (package_dir / packaged).parent.mkdir(parents=True, exist_ok=True)
                _replace(Path(self.build_lib, *package.split("."), packaged),
                         package_dir / packaged)


setup(
    name="laplace_attn",
    version="0.1.0",
    description="Linear-time Laplace-transform and Laplacian-kernel attention for PyTorch",
    packages=find_packages("python"),
    package_dir={"": "python"},
    ext_modules=[CMakeExtension("laplace_attn._C")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["torch>=2.4"],
    # laplace_attn.integrations.transformers (tested with transformers 5.24).
    extras_require={"transformers": ["transformers>=5.0"]},
    zip_safe=False,
)
