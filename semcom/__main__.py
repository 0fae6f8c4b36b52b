from semcom.cli import main

main()
