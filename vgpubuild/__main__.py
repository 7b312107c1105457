from vgpubuild.cli.app import main

main()
