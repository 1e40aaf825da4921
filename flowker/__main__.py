from flowker.cli import main

main()
