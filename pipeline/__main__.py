import sys

from pipeline.orchestration.main import check_choices, main

check_choices(sys.argv[1:])
main()
