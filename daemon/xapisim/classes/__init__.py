"""The XAPI methods the simulator implements, one module per XAPI class.

``dispatch.py`` maps each ``"Class.method"`` to its handler here (its
docstring has the table); every class also has the generic accessors of
``generic.py``. Handlers share the pool's model (``model/``) and declare
themselves with ``registry.Registry``.
"""
