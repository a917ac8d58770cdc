import subprocess
import sys

import pytest

from IMDLBenCo.registry import Registry


def make():
    return Registry("THINGS")


def test_register_as_decorator_and_call():
    reg = make()

    @reg.register_module()
    class Alpha:
        pass

    def beta():
        return 1

    reg.register_module(module=beta)
    assert reg.get("Alpha") is Alpha
    assert reg.get("beta") is beta
    assert reg.build("beta") == 1
    assert len(reg) == 2


def test_aliases_and_custom_name():
    reg = make()

    @reg.register_module(name=["Gamma", "gamma_alias"])
    class Gamma:
        pass

    assert reg.get("gamma_alias") is Gamma
    assert reg.list() == ["Gamma", "gamma_alias"]


def test_duplicate_refused_unless_force():
    reg = make()

    @reg.register_module()
    class Delta:
        pass

    with pytest.raises(KeyError, match="already registered"):
        @reg.register_module(name="Delta")
        class Other:
            pass

    @reg.register_module(name="Delta", force=True)
    class Replacement:
        pass

    assert reg.get("Delta") is Replacement


def test_bad_arguments_are_type_errors():
    reg = make()
    with pytest.raises(TypeError):
        reg.register_module(force="yes")
    with pytest.raises(TypeError):
        reg.register_module(name=3)
    with pytest.raises(TypeError):
        reg.register_module(module=42)


def test_miss_suggests_closest_without_dumping_table():
    reg = make()
    for name in ["IML_ViT", "MVSSNet", "PSCC_Net"] + [f"model_{i}" for i in range(50)]:
        reg.register_module(name=name, module=lambda: None)
    with pytest.raises(KeyError) as info:
        reg.get("IML_VIT")
    msg = str(info.value)
    assert 'Did you mean "IML_ViT"' in msg
    assert "model_49" not in msg  # the table is not printed


def test_contains_returns_bool_and_wildcards():
    reg = make()
    reg.register_module(name=["srm_vit", "vit", "resnet"], module=lambda: None)
    assert "vit" in reg
    assert ("nope" in reg) is False
    assert (3 in reg) is False
    assert reg.list("*vit") == ["srm_vit", "vit"]


def test_get_lower():
    reg = make()
    reg.register_module(name="cat_net_post_func", module=lambda d: d)
    assert reg.get_lower("Cat_Net_post_func") is reg.get("cat_net_post_func")


def test_lazy_package_is_imported_on_miss(tmp_path, monkeypatch):
    pkg = tmp_path / "lazyzoo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from IMDLBenCo.registry import MODELS\n"
        "@MODELS.register_module()\n"
        "class LazyZooModel:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from IMDLBenCo.registry import MODELS

    MODELS.add_lazy_package("lazyzoo_pkg")
    assert MODELS.get("LazyZooModel").__name__ == "LazyZooModel"


def test_missing_dependency_inside_lazy_package_is_not_hidden(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenzoo_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import a_module_that_does_not_exist_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry("X", lazy_packages=["brokenzoo_pkg"])
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist_xyz"):
        reg.get("anything")


def test_import_is_light():
    code = (
        "import sys, IMDLBenCo, IMDLBenCo.cli; IMDLBenCo.cli.build_parser(); "
        "heavy = [m for m in ('torch', 'timm', 'numpy', 'matplotlib', 'tensorboard') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_builtin_models_found_by_name_in_a_fresh_process():
    code = (
        "from IMDLBenCo.registry import MODELS; "
        "print(all(n in MODELS for n in ('IML_ViT', 'MVSSNet', 'PSCC_Net', 'Mesorch', 'srm_vit', 'resnet')), "
        "'DemoNet' in MODELS); "
        "import IMDLBenCo.demo.model; print('DemoNet' in MODELS)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # the demo's model is not registered for every user: only once the demo module is imported
    assert out.split() == ["True", "False", "True"]
