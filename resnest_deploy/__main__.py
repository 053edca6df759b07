from resnest_deploy.cli.app import main

main()
