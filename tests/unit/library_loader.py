"""Import a custom module from library/ for unit tests, with its module_utils where Ansible puts them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_library_module(name: str):
    import ansible.module_utils

    # What ansible.cfg's module_utils does: the project's module_utils/ become ansible.module_utils.<name>,
    # so that they import each other (kumolab_aws imports kumolab_resources) as they do in a real run.
    if str(REPO / "module_utils") not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(str(REPO / "module_utils"))
    for util in sorted((REPO / "module_utils").glob("*.py")):
        full = f"ansible.module_utils.{util.stem}"
        if full not in sys.modules:
            setattr(ansible.module_utils, util.stem, importlib.import_module(full))
    return _load(f"kumolab_library_{name}", REPO / "library" / f"{name}.py")
