# cuda-python < 12.6 layout: the same runtime bindings as cuda.bindings.runtime.
from cuda.bindings.runtime import *  # noqa: F403
