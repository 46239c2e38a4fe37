"""PyAV 18.1.0 for Tidings (p4a's stock recipe is 13.1.0), built on p4a's FFmpeg 8.0.1 recipe.

The video thumbnailer reads ``VideoFrame.rotation`` (PyAV 14.1 on) to turn portrait phone
videos upright; 13.1 lacks it, so their thumbnails would come out sideways. PyAV supports
FFmpeg 8 (p4a's ``ffmpeg`` recipe) from 15.1 and Python 3.14 from 16.0; 18.1.0 is the
desktop's version, the one the tests run on. PyAV 15+ needs Cython 3.1 and builds with it
(its setup.py cythonizes), so p4a's ``cython`` recipe (0.29) is not a dependency and the
13.1 patch that rewrote Cython 3 syntax for it is dropped; Cython 3 is installed into
hostpython instead. Build logic (``--ffmpeg-dir``, the codecs) stays p4a's.
"""

from pythonforandroid.recipes.av import PyAVRecipe


class TidingsPyAVRecipe(PyAVRecipe):
    version = "18.1.0"
    url = "https://github.com/PyAV-Org/PyAV/archive/v{version}.zip"
    depends = ["python3", "setuptools", "ffmpeg", "av_codecs"]
    patches: list[str] = []
    hostpython_prerequisites = ["setuptools>=77", "cython>=3.1,<4"]

    def build_arch(self, arch: object) -> None:
        self.install_hostpython_prerequisites()
        super().build_arch(arch)


recipe = TidingsPyAVRecipe()
