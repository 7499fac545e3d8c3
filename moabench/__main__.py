from moabench.cli import main

main()
