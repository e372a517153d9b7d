from pipelines.sample.cli import main

main()
