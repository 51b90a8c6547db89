"""The base of every config section: typed, frozen, unknown keys and non-finite floats refused
(``.inf`` or ``.nan`` in YAML is never a meaningful rate, temperature or clip).

Its own tiny module so that the sections that live beside the code they configure (dataset specs
in ``pst_core.data.spec``, each method's section in ``pst_core.methods``) need not import
``pst_core.config``, which assembles them.
"""

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
# Names become parts of file names (``eval_<peer>@<benchmark>.<hash>.parquet``): two of them must
# fit in a filesystem's 255 bytes.
NAME_MAX = 100


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
