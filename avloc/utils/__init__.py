"""Small helpers every part of avloc uses: atomic writes, the machine probe, progress and logs.

One way to do each: ``atomic`` (files appear whole or not at all, with the umask's modes),
``system`` (cores, device, one-line error text), ``progress`` (a bar on a terminal, timestamped
lines otherwise), ``options`` (command options checked once, every problem listed).
"""
