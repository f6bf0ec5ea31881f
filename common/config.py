"""The JSON form of the project's configuration dataclasses (ModelConfig, DataConfig,
TrainConfig), shared so that each reads and writes its config.json section the same way."""
import dataclasses
from typing import Any, Dict


class JsonConfig:
    """Mixin for a frozen dataclass of JSON-able fields: `to_dict` writes tuples as lists,
    `from_dict` reads them back as tuples and refuses unknown keys (a config of another
    version)."""

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able dict; `from_dict` inverts it."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]):
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown field(s) {unknown}; known: "
                             f"{sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
