"""What every command line of the project shares: a quiet TensorFlow start-up unless --verbose,
and error messages that name the flag. No TensorFlow here: it must run before TensorFlow starts.

Library code names the argument or field it refuses ("DataConfig.image_size must be ...",
"build_dataset: split must be ..."); an entry point turns such an error into an exit message
with `exit_with`, which puts the matching flag in front.
"""
import logging
import os
import re
import sys
import warnings
from typing import NoReturn, Optional, Sequence

from absl import flags

# A field or argument named by a library error: 'Class.field' or 'function: argument'.
_NAMED_ARGUMENT = re.compile(r"\b[A-Z]\w*\.(\w+)|\b\w+: (\w+)")


def define_verbose_flag() -> None:
    """Defines --verbose, read by `quiet_tensorflow` (call it once per program)."""
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's start-up messages (device "
                         "discovery, CUDA plug-in registration, oneDNN, TensorRT) and its "
                         "warnings, which are hidden by default.")


def define_choice_list(name: str, default: Sequence[str], choices: Sequence[str], help_text: str,
                       flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines --name, a comma-separated list of at least one of `choices`; anything else is
    refused when the flags are parsed, with the unknown items and the choices."""
    flags.DEFINE_list(name, list(default), f"{help_text} (any of {', '.join(choices)})",
                      flag_values=flag_values)

    def check(values):
        unknown = sorted(set(values) - set(choices))
        if unknown or not values:
            raise flags.ValidationError(f"unknown {unknown}; choose from {list(choices)}"
                                        if unknown else f"choose at least one of {list(choices)}")
        return True

    flags.register_validator(name, check, flag_values=flag_values)


def quiet_tensorflow(argv: Sequence[str] = ()) -> None:
    """Hides TensorFlow's start-up noise unless `argv` holds --verbose; call it before TensorFlow
    is imported (its C++ logging reads the environment once).

    Hidden: C++ log lines below FATAL (the CUDA factory registrations are logged as errors on a
    machine without a GPU; TensorRT, oneDNN and CPU-feature lines), TensorFlow's Python warnings
    and tensorflow_addons' end-of-life notice. Real failures still raise Python exceptions.
    """
    if any(a in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1") for a in argv):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r"\s*TensorFlow Addons", category=UserWarning)


def exit_with(error: Exception, flag: Optional[str] = None) -> NoReturn:
    """Exits with status 1 and `error`'s message, prefixed by `flag` if given, else by the flag of
    the first field or argument it names that is a flag of this program (module doc)."""
    message = str(error)
    if flag is not None:
        sys.exit(f"error: --{flag}: {message}")
    for match in _NAMED_ARGUMENT.finditer(message):
        name = match.group(1) or match.group(2)
        if name in flags.FLAGS:
            message = f"--{name}: {message}"
            break
    sys.exit(f"error: {message}")
