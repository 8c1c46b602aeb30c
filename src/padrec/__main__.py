"""``python -m padrec`` (and ``torchrun -m padrec``): the padrec command line."""

from padrec.cli import main

main()
