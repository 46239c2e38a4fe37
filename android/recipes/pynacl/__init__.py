"""PyNaCl 1.6.2 for Tidings (p4a's stock recipe is 1.3.0), linked to our libsodium 1.0.20.

PyNaCl binds the Ed25519 no-clamp functions XEdDSA needs from 1.4 on; 1.6 supports Python 3.14,
p4a's target Python. ``SODIUM_INSTALL=system`` (set by the parent recipe) makes PyNaCl link the
``libsodium`` recipe's shared library instead of building its bundled copy; the include and
library paths come from that recipe too. ``six`` is no longer a dependency.
"""

from pythonforandroid.recipes.pynacl import PyNaCLRecipe


class TidingsPyNaCLRecipe(PyNaCLRecipe):
    version = "1.6.2"
    url = "https://github.com/pyca/pynacl/archive/refs/tags/{version}.tar.gz"
    depends = ["hostpython3", "setuptools", "cffi", "libsodium"]


recipe = TidingsPyNaCLRecipe()
