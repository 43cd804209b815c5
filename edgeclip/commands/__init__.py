"""One module per CLI verb, named as the verb (``build``, ``reference``, ``list``, ``info``,
``pretrain``, ``reinforce``, ``verify``, ``predict``, ``inspect``, ``bench``). Each has
``main(args) -> int``, which ``cli.py`` calls, beside the library functions behind it
(``run_pretrain``, ``verify_bundle``, ``predict`` ...); the build itself is ``edgeclip.build``.
"""
