from oscar_batch.cli import main

raise SystemExit(main())
