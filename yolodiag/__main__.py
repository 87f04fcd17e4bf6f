from yolodiag.cli import main

main()
