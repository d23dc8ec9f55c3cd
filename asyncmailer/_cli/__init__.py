"""The ``asyncmailer`` command line, one module per concern.

:mod:`asyncmailer.cli` parses the arguments and dispatches; the commands live here:
``demo`` (:mod:`._demo`), ``send`` (:mod:`._send`), ``verify`` and ``quota``
(:mod:`._account`), ``bulk`` (:mod:`._bulk`, with its results file in :mod:`._results`
and its templates in :mod:`._render`). Shared pieces: transport options
(:mod:`._transport`) and human output and error hints (:mod:`._output`).
"""
