"""The type checker the test suite runs superposition.analysis under (see conftest.py): beartype, with
PEP 484's numeric tower, so an int is a valid ``float`` as the annotations mean it."""

from beartype import BeartypeConf, beartype

beartype_tower = beartype(conf=BeartypeConf(is_pep484_tower=True))
