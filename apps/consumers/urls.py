"""Dead-letter API routes (mounted under /api/v1/)."""

from django.urls import path

from apps.consumers import apis

urlpatterns = [
    path("dead-letters/", apis.DeadLetterListApi.as_view(), name="dead-letter-list"),
    path("dead-letters/discard/", apis.DeadLetterDiscardManyApi.as_view(), name="dead-letter-discard-many"),
    path("dead-letters/<id:pk>/", apis.DeadLetterDetailApi.as_view(), name="dead-letter-detail"),
    path("dead-letters/<id:pk>/replay/", apis.DeadLetterReplayApi.as_view(), name="dead-letter-replay"),
    path("dead-letters/<id:pk>/discard/", apis.DeadLetterDiscardApi.as_view(), name="dead-letter-discard"),
    path("dead-letters/<id:pk>/edit/", apis.DeadLetterEditAndReplayApi.as_view(), name="dead-letter-edit"),
    path("dead-letter-edits/", apis.DeadLetterEditListApi.as_view(), name="dead-letter-edit-list"),
    path("dead-letter-edits/<id:pk>/approve/", apis.DeadLetterEditApproveApi.as_view(),
         name="dead-letter-edit-approve"),
    path("dead-letter-edits/<id:pk>/reject/", apis.DeadLetterEditRejectApi.as_view(),
         name="dead-letter-edit-reject"),
]
