"""Config <-> signature reconciliation, without TensorFlow."""

from __future__ import annotations

import pytest

from mly.config import parse_config
from mly.config.schema import ModelConfig
from mly.model.interface import InterfaceError, reconcile

SIG_IN = [("sl", "string"), ("sa", "string"), ("fl", "float32"), ("i1", "int64")]
SIG_OUT = [("score", "float32"), ("label", "int64")]


def model(**fields: object) -> ModelConfig:
    raw = {"ID": "m", "URL": "/m", **fields}
    return parse_config({"Models": [raw]}).models[0]


def test_unconfigured_inputs_are_appended_alphabetically() -> None:
    iface = reconcile(model(Inputs=[{"Name": "fl", "Precision": 2}]), SIG_IN, SIG_OUT, caching=True)
    assert [f.name for f in iface.inputs] == ["fl", "i1", "sa", "sl"]
    assert [f.index for f in iface.inputs] == [0, 1, 2, 3]
    assert [f.data_type for f in iface.inputs] == ["float", "int64", "string", "string"]
    assert iface.fed == ("fl", "i1", "sa", "sl")
    assert iface.vocabulary_inputs == ("i1", "sa", "sl")
    assert iface.key_fields == ("fl", "i1", "sa", "sl")  # caching on and none configured
    assert [o.name for o in iface.outputs] == ["label", "score"]  # sorted (docs/differences-from-go.md #7)


def test_auxiliary_inputs_and_key_field_wildcards() -> None:
    cfg = model(
        KeyFields=["sa", "sl", "aux", "kf"],
        Inputs=[{"Name": "sa"}, {"Name": "sl"}, {"Name": "aux"}, {"Name": "kf"}, {"Name": "fl", "Precision": 3}],
    )
    iface = reconcile(cfg, SIG_IN, SIG_OUT, caching=True)
    by_name = {f.name: f for f in iface.inputs}
    assert by_name["aux"].auxiliary and by_name["aux"].wildcard and by_name["aux"].data_type == "string"
    assert by_name["kf"].auxiliary and by_name["kf"].wildcard
    assert iface.auxiliary == ("aux", "kf")
    assert "aux" not in iface.fed
    assert iface.key_fields == ("sa", "sl", "aux", "kf")


def test_auxiliary_not_in_key_fields_is_not_keyed() -> None:
    cfg = model(Inputs=[{"Name": "note"}, {"Name": "fl", "Precision": 1}])
    iface = reconcile(cfg, SIG_IN, SIG_OUT, caching=False)
    note = iface.input("note")
    assert note is not None and note.auxiliary and not note.wildcard
    assert iface.key_fields == ()


def test_key_fields_shorthand_without_inputs() -> None:
    cfg = model(KeyFields=["sa", "extra"], Auxiliary=["aux"], Inputs=[{"Name": "fl", "Wildcard": True}])
    # Inputs given: the shorthand is ignored, so a key field that is no input is an error.
    with pytest.raises(InterfaceError, match="KeyFields: 'extra' is not an input"):
        reconcile(cfg, SIG_IN, SIG_OUT, caching=True)
    cfg = model(KeyFields=["sa"], Auxiliary=["aux"], Inputs=[{"Name": "fl", "Wildcard": True}])
    iface = reconcile(cfg, SIG_IN, SIG_OUT, caching=True)
    assert [f.name for f in iface.inputs] == ["fl", "i1", "sa", "sl"]
    cfg = model(KeyFields=["sa", "extra"], Auxiliary=["aux"])
    with pytest.raises(InterfaceError, match="'fl' is a float"):
        reconcile(cfg, SIG_IN, SIG_OUT, caching=True)
    iface = reconcile(model(KeyFields=["sa", "extra"], Auxiliary=["aux"], UseDict=False), SIG_IN, SIG_OUT,
                      caching=False)
    assert [f.name for f in iface.inputs] == ["sa", "extra", "aux", "fl", "i1", "sl"]
    assert [f.auxiliary for f in iface.inputs] == [False, True, True, False, False, False]
    assert iface.input("extra").wildcard and not iface.input("aux").wildcard  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Inputs": []}, "input 'fl' is a float: give it Precision"),
        ({"Inputs": [{"Name": "sa", "Auxiliary": True}, {"Name": "fl", "Precision": 1}]},
         "'sa' is a model input and cannot be Auxiliary"),
        ({"Inputs": [{"Name": "sa", "DataType": "int64"}, {"Name": "fl", "Precision": 1}]},
         "DataType 'int64' does not match the model's string"),
        ({"Inputs": [{"Name": "sa", "Precision": 2}, {"Name": "fl", "Precision": 1}]},
         "Precision applies to float inputs only"),
        ({"Inputs": [{"Name": "fl", "Precision": 1}], "Outputs": [{"Name": "nope"}]}, "output 'nope' is not in the model"),
    ],
)
def test_conflicts_name_the_input(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InterfaceError, match=message):
        reconcile(model(**fields), SIG_IN, SIG_OUT, caching=True)


def test_bool_input_needs_wildcard() -> None:
    with pytest.raises(InterfaceError, match="'flag' is a bool"):
        reconcile(model(), [("flag", "bool")], SIG_OUT, caching=True)
    iface = reconcile(model(Inputs=[{"Name": "flag", "Wildcard": True}]), [("flag", "bool")], SIG_OUT, caching=True)
    assert iface.vocabulary_inputs == ()


def test_use_dict_off_needs_no_vocabulary() -> None:
    iface = reconcile(model(UseDict=False), SIG_IN, SIG_OUT, caching=False)
    assert iface.vocabulary_inputs == ()


def test_key_field_that_is_no_input_is_refused() -> None:
    cfg = model(Inputs=[{"Name": "fl", "Precision": 2}], KeyFields=["sa", "devise"])
    with pytest.raises(InterfaceError, match=r"KeyFields: 'devise' is not an input of the model \(inputs: fl, "):
        reconcile(cfg, SIG_IN, SIG_OUT, caching=True)
    with pytest.raises(InterfaceError, match="KeyFields: 'devise'"):
        reconcile(cfg, SIG_IN, SIG_OUT, caching=False)


def test_uncached_model_takes_raw_floats_and_bools() -> None:
    """Precision (and Wildcard for bools) is a key rule: only a cached model needs it."""
    iface = reconcile(model(), SIG_IN, SIG_OUT, caching=False)
    assert iface.input("fl").precision == 0  # type: ignore[union-attr]
    reconcile(model(), [("flag", "bool")], SIG_OUT, caching=False)
